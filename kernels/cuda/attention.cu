// kernels/cuda/attention.cu: fused (flash-style) attention, forward and backward.
// q, k, v, o: [B, H, T, D], float32 in memory. Three forward versions:
//   v1: float32 on the CUDA cores (below); v2: tensor cores (WMMA) on 16-bit operands, the
//   tile products through shared memory; v3: tensor cores (mma.sync), products in registers.
// v1: a block owns 64 query rows of one (b, h), 8 warps of 8 rows each.
// Forward, per tile of 32 keys (K and V staged in shared memory):
//   lane j computes the score of key j for one row (q from shared memory, broadcast; K rows
//   padded to D+1 floats so the 32 lanes hit 32 banks); the warp folds the tile into the
//   row's running max m and sum l (online softmax: old terms rescale by e^(m_old − m_new));
//   each lane then accumulates its D/32 output columns: o += Σ_j p_j · V[j].
// The T x T matrix is never written; lse = m + log l per row is kept for the backward.
// Backward (same tiling, recomputing p = e^(s − lse)): with Δ_i = dO_i · O_i,
//   dS_ij = P_ij (dO_i · V_j − Δ_i),  dQ_i = scale Σ_j dS_ij K_j,
//   dK_j = scale Σ_i dS_ij Q_i,        dV_j = Σ_i P_ij dO_i.
// One kernel owns query rows and writes dQ; another owns key rows and writes dK and dV, so
// nothing is accumulated with atomics. Head size: any D <= 128 (CLIP: 64; VQGAN's single
// head of 512 goes through attention_unfused).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ptx.cuh"

namespace mm::cuda {

namespace {

constexpr int kRows = 64;   // query rows per block (8 warps x 8)
constexpr int kKeys = 32;   // keys per tile (one per lane)
constexpr int kWarps = 8;
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kKeyRows = 32;  // key rows per block of the dK/dV kernel (8 warps x 4: fewer accumulators)
constexpr int kKeyRowsPerWarp = kKeyRows / kWarps;

// Largest key index a query row may see (causal) or Tk - 1.
__device__ __forceinline__ int64_t last_key(int64_t row, int64_t Tq, int64_t Tk, bool causal) {
  return causal ? row + (Tk - Tq) : Tk - 1;
}

template <int NV>  // NV = ceil(D / 32): output columns per lane
__global__ void __launch_bounds__(256) attention_fwd_v1(const float* __restrict__ q, const float* __restrict__ k,
                                                        const float* __restrict__ v, float* __restrict__ o,
                                                        float* __restrict__ lse, int64_t Tq, int64_t Tk, int D,
                                                        float scale, bool causal) {
  extern __shared__ float smem[];
  float* Qs = smem;                    // [kRows][D]
  float* Ks = Qs + kRows * D;          // [kKeys][D + 1]
  float* Vs = Ks + kKeys * (D + 1);    // [kKeys][D]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows);
  const float* qb = q + bh * Tq * D;
  const float* kb = k + bh * Tk * D;
  const float* vb = v + bh * Tk * D;
  for (int e = tid; e < kRows * D; e += blockDim.x) {
    const int64_t r = q0 + e / D;
    Qs[e] = r < Tq ? qb[r * D + e % D] : 0.0f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][NV];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; ++i) acc[r][i] = 0.0f;
  }
  const int64_t q_last = min(q0 + kRows, Tq) - 1;
  const int64_t k_end = min(Tk, last_key(q_last, Tq, Tk, causal) + 1);
  for (int64_t k0 = 0; k0 < k_end; k0 += kKeys) {
    __syncthreads();  // the previous tile is consumed (and Qs written, the first time)
    for (int e = tid; e < kKeys * D; e += blockDim.x) {
      const int j = e / D, d = e % D;
      const bool in = k0 + j < Tk;
      Ks[j * (D + 1) + d] = in ? kb[(k0 + j) * D + d] : 0.0f;
      Vs[j * D + d] = in ? vb[(k0 + j) * D + d] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int lr = warp * kRowsPerWarp + r;
      const int64_t row = q0 + lr;
      if (row >= Tq) continue;  // warp-uniform
      const int64_t key = k0 + lane;
      const bool valid = key < Tk && key <= last_key(row, Tq, Tk, causal);
      float s = 0.0f;
      const float* qr = Qs + lr * D;
      const float* kr = Ks + lane * (D + 1);
      for (int d = 0; d < D; ++d) s += qr[d] * kr[d];
      s = valid ? s * scale : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(s));
      if (m_new == -INFINITY) continue;  // nothing visible yet for this row (warp-uniform)
      const float p = valid ? __expf(s - m_new) : 0.0f;
      const float alpha = m[r] == -INFINITY ? 0.0f : __expf(m[r] - m_new);
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int i = 0; i < NV; ++i) acc[r][i] *= alpha;
#pragma unroll 4
      for (int j = 0; j < kKeys; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int i = 0; i < NV; ++i) {
          const int d = lane + 32 * i;
          if (d < D) acc[r][i] += pj * Vs[j * D + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = q0 + warp * kRowsPerWarp + r;
    if (row >= Tq) continue;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int d = lane + 32 * i;
      if (d < D) o[(bh * Tq + row) * D + d] = acc[r][i] * inv;
    }
    if (lane == 0) lse[bh * Tq + row] = l[r] > 0.0f ? m[r] + __logf(l[r]) : -INFINITY;
  }
}

// ---- v2: tensor cores (WMMA) on 16-bit operands, float32 softmax and sums --------------------
// A block of 4 warps owns 64 query rows (16 per warp) and streams tiles of 64 keys. Q, K and V
// are rounded to T16 (bf16, or fp16) as they are staged into shared memory. Per tile, each warp:
//   S = Q Kᵀ           16 x 64, WMMA with float32 accumulators, stored to the warp's scratch
//   online softmax     two lanes per row, 32 keys each: running max m and sum l (float32);
//                      P = e^(scale·s − m) rounded to T16
//   O = α·O + P V      O (16 x DP, float32) lives in shared memory: the lanes rescale their
//                      rows by α, then WMMA loads O as the accumulator, adds P·V, stores it.
// WMMA's fragment layout is unspecified, so the per-row rescaling goes through shared memory
// instead of into the fragments' registers. DP is D rounded up to 32, 64 or 128 (zero-padded
// columns). The output and lse are those of v1, so v1's backward serves both.
constexpr int kRows2 = 64, kKeys2 = 64;

template <int DP>
struct Fwd2Layout {  // offsets in bytes into the dynamic shared memory; 16-bit T16 elements
  static constexpr int ldq = DP + 8;      // Qs, Ks, Vs rows (T16)
  static constexpr int lds = kKeys2 + 4;  // S scratch rows (float)
  static constexpr int ldp = kKeys2 + 8;  // P rows (T16)
  static constexpr int ldo = DP + 4;      // O rows (float)
  static constexpr size_t align(size_t b) { return (b + 127) / 128 * 128; }
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + align(2 * size_t(kRows2) * ldq);
  static constexpr size_t v_off = k_off + align(2 * size_t(kKeys2) * ldq);
  static constexpr size_t s_off = v_off + align(2 * size_t(kKeys2) * ldq);
  static constexpr size_t p_off = s_off + align(4 * size_t(kRows2) * lds);
  static constexpr size_t o_off = p_off + align(2 * size_t(kRows2) * ldp);
  static constexpr size_t bytes = o_off + align(4 * size_t(kRows2) * ldo);
};

using ptx::to16;

// rows x DP of src [.., D] from row0 into dst (row stride ld), rounded; zeros past rows_total or D.
template <typename T16, int DP>
__device__ void stage_rows(T16* dst, int ld, const float* __restrict__ src, int64_t row0, int64_t rows_total,
                           int rows, int D) {
  for (int e = threadIdx.x; e < rows * DP; e += blockDim.x) {
    const int r = e / DP, d = e % DP;
    const int64_t gr = row0 + r;
    dst[r * ld + d] = to16<T16>(gr < rows_total && d < D ? src[gr * D + d] : 0.0f);
  }
}

template <typename T16, int DP>
__global__ void __launch_bounds__(128) attention_fwd_v2(const float* __restrict__ q, const float* __restrict__ k,
                                                        const float* __restrict__ v, float* __restrict__ o,
                                                        float* __restrict__ lse, int64_t Tq, int64_t Tk, int D,
                                                        float scale, bool causal) {
  using namespace nvcuda;
  using L = Fwd2Layout<DP>;
  static_assert(sizeof(T16) == 2, "16-bit operands");
  extern __shared__ __align__(128) float4 attn2_smem[];
  unsigned char* base = reinterpret_cast<unsigned char*>(attn2_smem);
  T16* Qs = reinterpret_cast<T16*>(base + L::q_off);
  T16* Ks = reinterpret_cast<T16*>(base + L::k_off);
  T16* Vs = reinterpret_cast<T16*>(base + L::v_off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* Ss = reinterpret_cast<float*>(base + L::s_off) + warp * 16 * L::lds;  // this warp's [16][64]
  T16* Ps = reinterpret_cast<T16*>(base + L::p_off) + warp * 16 * L::ldp;      // [16][64]
  float* Os = reinterpret_cast<float*>(base + L::o_off) + warp * 16 * L::ldo;  // [16][DP]
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows2);
  stage_rows<T16, DP>(Qs, L::ldq, q + bh * Tq * D, q0, Tq, kRows2, D);
  for (int e = lane; e < 16 * DP; e += 32) Os[(e / DP) * L::ldo + e % DP] = 0.0f;
  __syncwarp();  // the lanes read each other's zeros (even when no key tile follows: Tk = 0)
  const int r = lane >> 1, half = lane & 1;  // this lane's row of the warp's 16; its half of keys/columns
  const int64_t row = q0 + warp * 16 + r;
  // the last key this row sees (-1: none, for rows past Tq)
  const int64_t last = row < Tq ? min(Tk - 1, last_key(row, Tq, Tk, causal)) : -1;
  float m = -INFINITY, l = 0.0f;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T16, wmma::row_major> qf[DP / 16];
  const int64_t q_last = min(q0 + kRows2, Tq) - 1;
  const int64_t k_end = min(Tk, last_key(q_last, Tq, Tk, causal) + 1);
  for (int64_t k0 = 0; k0 < k_end; k0 += kKeys2) {
    __syncthreads();  // the previous tile's K and V are consumed
    stage_rows<T16, DP>(Ks, L::ldq, k + bh * Tk * D, k0, Tk, kKeys2, D);
    stage_rows<T16, DP>(Vs, L::ldq, v + bh * Tk * D, k0, Tk, kKeys2, D);
    __syncthreads();
    if (k0 == 0) {
#pragma unroll
      for (int i = 0; i < DP / 16; ++i) wmma::load_matrix_sync(qf[i], Qs + warp * 16 * L::ldq + i * 16, L::ldq);
    }
    // S = Q Kᵀ: Kᵀ is K's rows read column-major
#pragma unroll
    for (int n = 0; n < kKeys2 / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int i = 0; i < DP / 16; ++i) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + n * 16 * L::ldq + i * 16, L::ldq);
        wmma::mma_sync(acc, qf[i], kf, acc);
      }
      wmma::store_matrix_sync(Ss + n * 16, acc, L::lds, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax over this lane's 32 keys of its row; the pair of lanes combines.
    const float* srow = Ss + r * L::lds + half * 32;
    T16* prow = Ps + r * L::ldp + half * 32;
    const int64_t kbase = k0 + half * 32;
    float tmax = -INFINITY;
    for (int j = 0; j < 32; ++j)
      if (kbase + j <= last) tmax = fmaxf(tmax, srow[j] * scale);
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    const float m_new = fmaxf(m, tmax);
    const bool any = m_new != -INFINITY;  // anything visible yet (same for both lanes of a row)
    float psum = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float p = any && kbase + j <= last ? __expf(srow[j] * scale - m_new) : 0.0f;
      psum += p;
      prow[j] = to16<T16>(p);
    }
    psum += __shfl_xor_sync(0xffffffffu, psum, 1);
    const float alpha = m == -INFINITY ? 0.0f : __expf(m - m_new);  // O and l are 0 while m is -inf
    l = l * alpha + psum;
    m = m_new;
    float* orow = Os + r * L::ldo;
    for (int c = half * (DP / 2); c < (half + 1) * (DP / 2); ++c) orow[c] *= alpha;
    __syncwarp();
    // O += P V
#pragma unroll
    for (int c = 0; c < DP / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, Os + c * 16, L::ldo, wmma::mem_row_major);
#pragma unroll
      for (int n = 0; n < kKeys2 / 16; ++n) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T16, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T16, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, Ps + n * 16, L::ldp);
        wmma::load_matrix_sync(vf, Vs + n * 16 * L::ldq + c * 16, L::ldq);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(Os + c * 16, acc, L::ldo, wmma::mem_row_major);
    }
    __syncwarp();
  }
  // o = O / l, the warp's 16 rows written together (row rr's 1/l comes from lane 2·rr)
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int e0 = 0; e0 < 16 * D; e0 += 32) {
    const int e = e0 + lane, rr = min(e / D, 15);
    const float inv_rr = __shfl_sync(0xffffffffu, inv, 2 * rr);
    const int64_t orow_g = q0 + warp * 16 + rr;
    if (e < 16 * D && orow_g < Tq) o[(bh * Tq + orow_g) * D + e % D] = Os[rr * L::ldo + e % D] * inv_rr;
  }
  if (half == 0 && row < Tq) lse[bh * Tq + row] = l > 0.0f ? m + __logf(l) : -INFINITY;
}

// ---- v3: tensor cores through mma.sync, the tile products kept in registers ----------------
// The block shape of v2 (4 warps, 16 query rows each, 64-key tiles; Q, K, V rounded to T16 as
// they are staged), but with mma.sync's documented register layout (ptx.cuh) nothing but the
// staged operands goes through shared memory. Lane L of a warp (g = L / 4, t = L % 4) holds
//   S = Q Kᵀ  16 x 64: s[j][e], row g + 8·(e/2), key 8j + 2t + e%2 of the tile (8 m16n8 tiles);
//             Q's fragments come once by ldmatrix, K's per tile (K's rows are Kᵀ's columns,
//             so the plain ldmatrix gives the column-major B operand);
//   softmax   each row lives in the 4 lanes of a quad: max and sum over the lane's 16 values,
//             then shuffles with lanes ^1 and ^2; α = e^(m_old − m_new) rescales O's
//             registers of that row; the sum l stays per lane until the end;
//   P·V       P's accumulators, rounded to T16 in pairs, are already the A fragments of the
//             next product (S's tiles 2s and 2s+1 = P's k-step s); V [key][d] comes by
//             ldmatrix .trans as the B operand;
//   O         16 x DP in registers: o[n][e], row g + 8·(e/2), column 8n + 2t + e%2.
// Shared memory is only Q, K and V: 3 · 64 rows of DP + 8 elements (the 16 bytes of padding
// put the 8 rows an ldmatrix reads on different banks). DP: D rounded up to 32, 64 or 128.
static_assert(kRows2 == 64 && kKeys2 == 64, "the v3 tiles are 64 x 64: 8 n-tiles of S, 4 k-steps of P");
template <int DP>
constexpr size_t fwd3_bytes() {
  return size_t(3) * 64 * (DP + 8) * 2;
}

// rows x DP of src [.., D] from row0, rounded to T16 in pairs into words (row stride ld
// elements); zeros past rows_total or D.
template <typename T16, int DP>
__device__ void stage_pairs(uint32_t* dst, int ld, const float* __restrict__ src, int64_t row0, int64_t rows_total,
                            int rows, int D) {
  for (int e = threadIdx.x; e < rows * (DP / 2); e += blockDim.x) {
    const int r = e / (DP / 2), d = 2 * (e % (DP / 2));
    const int64_t gr = row0 + r;
    const bool in = gr < rows_total;
    const float x0 = in && d < D ? src[gr * D + d] : 0.0f, x1 = in && d + 1 < D ? src[gr * D + d + 1] : 0.0f;
    dst[(r * ld + d) / 2] = ptx::pack2<T16>(x0, x1);
  }
}

// The warp's tile products (lane layout above; `rows` are this warp's 16 rows of a staged
// [.][ld] matrix, `cols` 64 rows of another, both T16 in shared memory):
//   acc (16 x 64) += rows · colsᵀ       (S = Q Kᵀ, dP = dO Vᵀ, Sᵀ = K Qᵀ, dPᵀ = V dOᵀ)
template <typename T16, int DP>
__device__ __forceinline__ void mma_rows_colsT(float (&acc)[8][4], const unsigned short* rows,
                                               const unsigned short* cols, int ld) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < DP / 16; ++ks) {
    uint32_t a[4];
    ptx::ldmatrix_x4<false>(a, rows + (lane & 15) * ld + ks * 16 + (lane >> 4) * 8);
#pragma unroll
    for (int jp = 0; jp < 4; ++jp) {  // cols 16·jp .. +15: acc's n-tiles 2jp and 2jp + 1
      uint32_t r[4];
      ptx::ldmatrix_x4<false>(r, cols + (jp * 16 + (lane & 7) + (lane >> 4) * 8) * ld + ks * 16 + ((lane >> 3) & 1) * 8);
      const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
      ptx::mma_16816<T16>(acc[2 * jp], a, b0);
      ptx::mma_16816<T16>(acc[2 * jp + 1], a, b1);
    }
  }
}
//   acc (16 x DP) += P (16 x 64, as A fragments) · vals (64 x DP)   (O += P V, dV += Pᵀ dO,
//   dK += dSᵀ Q, dQ += dS K)
template <typename T16, int DP>
__device__ __forceinline__ void mma_p_vals(float (&acc)[DP / 8][4], const uint32_t (&pa)[4][4],
                                           const unsigned short* vals, int ld) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks)
#pragma unroll
    for (int np = 0; np < DP / 16; ++np) {  // acc's n-tiles 2np and 2np + 1
      uint32_t r[4];
      ptx::ldmatrix_x4<true>(r, vals + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + np * 16 + (lane >> 4) * 8);
      const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
      ptx::mma_16816<T16>(acc[2 * np], pa[ks], b0);
      ptx::mma_16816<T16>(acc[2 * np + 1], pa[ks], b1);
    }
}
// A 16 x 64 accumulator rounded to T16 as the A fragments of the next product: its n-tiles
// 2s and 2s + 1 are k-step s (rows g and g + 8, columns 2t, 2t + 1 and 8 more).
template <typename T16>
__device__ __forceinline__ void to_a_fragments(uint32_t (&pa)[4][4], const float (&x)[8][4]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    pa[j / 2][2 * (j % 2)] = ptx::pack2<T16>(x[j][0], x[j][1]);      // row g
    pa[j / 2][2 * (j % 2) + 1] = ptx::pack2<T16>(x[j][2], x[j][3]);  // row g + 8
  }
}
template <int N>
__device__ __forceinline__ void zero(float (&x)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[n][e] = 0.0f;
}

// The forward's per-warp state across key tiles: O (16 x DP) in registers, and for rows g and
// g + 8 the running max m, this lane's part of the sum l, and the last key the row sees.
template <int DP>
struct Fwd3Rows {
  float acc[DP / 8][4];
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  int64_t last[2];
  __device__ __forceinline__ Fwd3Rows(int64_t q0, int64_t Tq, int64_t Tk, bool causal) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
    zero(acc);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = q0 + warp * 16 + g + 8 * h;
      last[h] = row < Tq ? min(Tk - 1, last_key(row, Tq, Tk, causal)) : -1;
    }
  }
  // One tile of 64 keys from k0 (K and V staged, rows of ld elements): S = Q Kᵀ, the online
  // softmax (scaled, masked scores; the quad's max; O and l rescaled by e^(m_old − m_new)),
  // P = e^(s − m) summed in float32 and rounded to T16 as the A fragments of O += P V.
  template <typename T16>
  __device__ __forceinline__ void tile(const unsigned short* Qrows, const unsigned short* Ke, const unsigned short* Ve, int ld,
                       int64_t k0, float scale) {
    const int t = threadIdx.x & 3;
    float s[8][4];
    zero(s);
    mma_rows_colsT<T16, DP>(s, Qrows, Ke, ld);
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k0 + 8 * j + 2 * t + (e & 1);
        s[j][e] = key <= last[e >> 1] ? s[j][e] * scale : -INFINITY;
        tmax[e >> 1] = fmaxf(tmax[e >> 1], s[j][e]);
      }
    float alpha[2], m_new[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tmax[h] = fmaxf(tmax[h], __shfl_xor_sync(0xffffffffu, tmax[h], 1));
      tmax[h] = fmaxf(tmax[h], __shfl_xor_sync(0xffffffffu, tmax[h], 2));
      m_new[h] = fmaxf(m[h], tmax[h]);
      alpha[h] = m[h] == -INFINITY ? 0.0f : __expf(m[h] - m_new[h]);  // O and l are 0 while m is -inf
      m[h] = m_new[h];
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int n = 0; n < DP / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[n][e] *= alpha[e >> 1];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = m_new[e >> 1] == -INFINITY ? 0.0f : __expf(s[j][e] - m_new[e >> 1]);
        l[e >> 1] += s[j][e];
      }
    uint32_t pa[4][4];
    to_a_fragments<T16>(pa, s);
    mma_p_vals<T16, DP>(acc, pa, Ve, ld);
  }
  // The quad's partial sums; o = O / l; lse from the quad's first lane.
  __device__ __forceinline__ void finish(float* __restrict__ o, float* __restrict__ lse, int64_t bh, int64_t q0, int64_t Tq, int D) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
      l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
      inv[h] = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
    }
#pragma unroll
    for (int n = 0; n < DP / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = q0 + warp * 16 + g + 8 * (e >> 1);
        const int col = 8 * n + 2 * t + (e & 1);
        if (row < Tq && col < D) o[(bh * Tq + row) * D + col] = acc[n][e] * inv[e >> 1];
      }
    if (t == 0)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = q0 + warp * 16 + g + 8 * h;
        if (row < Tq) lse[bh * Tq + row] = l[h] > 0.0f ? m[h] + __logf(l[h]) : -INFINITY;
      }
  }
};

// The keys a block of 64 query rows from q0 needs: [0, k_end).
__device__ __forceinline__ int64_t block_key_end(int64_t q0, int64_t Tq, int64_t Tk, bool causal) {
  const int64_t q_last = min(q0 + kRows2, Tq) - 1;
  return min(Tk, last_key(q_last, Tq, Tk, causal) + 1);
}

template <typename T16, int DP>
__global__ void __launch_bounds__(128) attention_fwd_v3(const float* __restrict__ q, const float* __restrict__ k,
                                                        const float* __restrict__ v, float* __restrict__ o,
                                                        float* __restrict__ lse, int64_t Tq, int64_t Tk, int D,
                                                        float scale, bool causal) {
  constexpr int ld = DP + 8;  // row stride (elements)
  extern __shared__ __align__(128) float4 attn3_smem[];
  uint32_t* Qw = reinterpret_cast<uint32_t*>(attn3_smem);  // [64][ld] T16, as pairs
  uint32_t* Kw = Qw + 64 * ld / 2;
  uint32_t* Vw = Kw + 64 * ld / 2;
  const unsigned short* Qe = reinterpret_cast<const unsigned short*>(Qw);  // element addresses, for ldmatrix
  const unsigned short* Ke = reinterpret_cast<const unsigned short*>(Kw);
  const unsigned short* Ve = reinterpret_cast<const unsigned short*>(Vw);
  const int warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows2);
  stage_pairs<T16, DP>(Qw, ld, q + bh * Tq * D, q0, Tq, kRows2, D);
  Fwd3Rows<DP> rows(q0, Tq, Tk, causal);
  const int64_t k_end = block_key_end(q0, Tq, Tk, causal);
  for (int64_t k0 = 0; k0 < k_end; k0 += kKeys2) {
    __syncthreads();  // the previous tile's K and V are consumed
    stage_pairs<T16, DP>(Kw, ld, k + bh * Tk * D, k0, Tk, kKeys2, D);
    stage_pairs<T16, DP>(Vw, ld, v + bh * Tk * D, k0, Tk, kKeys2, D);
    __syncthreads();
    rows.template tile<T16>(Qe + warp * 16 * ld, Ke, Ve, ld, k0, scale);
  }
  rows.finish(o, lse, bh, q0, Tq, D);
}

// ---- v4: v3 on 16-bit q, k, v in memory, K and V double-buffered by cp.async ---------------
// attention_forward converts q, k and v once (to16_padded: [BH, T, DP] T16, zero columns past
// D) and the kernel streams K and V tiles with 16-byte cp.async copies into two shared-memory
// buffers: the next tile is in flight while the tensor cores work on this one. For long
// sequences each K and V row is read ceil(Tq / 64) times, in half the bytes of v3's float32
// reads and without stalling the block. (For short ones the conversion pass costs more than it
// saves: defaults.cu's attention_16bit_version picks.)
template <int DP>
constexpr size_t fwd4_bytes() {
  return size_t(5) * 64 * (DP + 8) * 2;  // Q, K x 2, V x 2
}

// rows x DP elements of a [.., DP] T16 matrix from row0 into shared memory (row stride ld
// elements) by cp.async, zero-filled past rows_total.
template <int DP>
__device__ __forceinline__ void copy_rows_async(unsigned short* dst, int ld, const unsigned short* __restrict__ src,
                                                int64_t row0, int64_t rows_total) {
  constexpr int chunks = DP / 8;  // 16 bytes each
  for (int c = threadIdx.x; c < 64 * chunks; c += blockDim.x) {
    const int r = c / chunks, x = c % chunks;
    const int64_t gr = row0 + r;
    const bool in = gr < rows_total;
    ptx::cp_async16(dst + r * ld + 8 * x, in ? src + gr * DP + 8 * x : src, in ? 16 : 0);
  }
}

template <typename T16, int DP>
__global__ void __launch_bounds__(128) attention_fwd_v4(const unsigned short* __restrict__ q,
                                                        const unsigned short* __restrict__ k,
                                                        const unsigned short* __restrict__ v, float* __restrict__ o,
                                                        float* __restrict__ lse, int64_t Tq, int64_t Tk, int D,
                                                        float scale, bool causal) {
  constexpr int ld = DP + 8;
  extern __shared__ __align__(128) float4 attn4_smem[];
  unsigned short* Qs = reinterpret_cast<unsigned short*>(attn4_smem);  // [64][ld]
  unsigned short* Ks = Qs + 64 * ld;                                   // [2][64][ld]
  unsigned short* Vs = Ks + 2 * 64 * ld;                               // [2][64][ld]
  const int warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows2);
  const unsigned short* kb = k + bh * Tk * DP;
  const unsigned short* vb = v + bh * Tk * DP;
  Fwd3Rows<DP> rows(q0, Tq, Tk, causal);
  const int64_t k_end = block_key_end(q0, Tq, Tk, causal);
  const int tiles = int((k_end + kKeys2 - 1) / kKeys2);
  copy_rows_async<DP>(Qs, ld, q + bh * Tq * DP, q0, Tq);
  if (tiles > 0) {
    copy_rows_async<DP>(Ks, ld, kb, 0, Tk);
    copy_rows_async<DP>(Vs, ld, vb, 0, Tk);
  }
  ptx::cp_async_commit();  // group: Q and tile 0
  for (int i = 0; i < tiles; ++i) {
    const int buf = i & 1;
    if (i + 1 < tiles) {  // tile i + 1 into the other buffer (consumed at i - 1, before the barrier that ended it)
      const int64_t k1 = int64_t(i + 1) * kKeys2;
      copy_rows_async<DP>(Ks + (buf ^ 1) * 64 * ld, ld, kb, k1, Tk);
      copy_rows_async<DP>(Vs + (buf ^ 1) * 64 * ld, ld, vb, k1, Tk);
    }
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // all but the newest group: tile i (and Q) have landed, for this thread
    __syncthreads();          // and for every thread
    rows.template tile<T16>(Qs + warp * 16 * ld, Ks + buf * 64 * ld, Vs + buf * 64 * ld, ld, int64_t(i) * kKeys2,
                            scale);
    __syncthreads();  // buffer buf is consumed: the next iteration refills it
  }
  ptx::cp_async_wait<0>();  // (with no key tile, Q's copies: none left in flight at exit)
  rows.finish(o, lse, bh, q0, Tq, D);
}

// x [rows, D] float32 -> y [rows, DP] T16, zero past D.
template <typename T16, int DP>
void to16_padded(const float* x, unsigned short* y, int64_t rows, int64_t D) {
  launch_each(rows * DP, "attention_forward", [=] __device__(int64_t e) {
    const int64_t r = e / DP, d = e % DP;
    const T16 h = ptx::to16<T16>(d < D ? x[r * D + d] : 0.0f);
    unsigned short bits;
    memcpy(&bits, &h, 2);
    y[e] = bits;
  });
}

// ---- the backward on the tensor cores (bf16 products, float32 statistics) ------------------
// The same tiles and lane layout as v3. P = e^(scale·s − lse) is recomputed from the forward's
// lse; dS = P ∘ (dP − Δ) with Δ_i = dO_i · O_i (attention_delta). Two kernels, no atomics:
//   dq: a block owns 64 query rows (16 per warp) and streams key tiles:
//       S = Q Kᵀ, dP = dO Vᵀ, dQ += dS K          (dQ's rows in registers)
//   dkdv: a block owns 64 keys (16 per warp) and streams query tiles, working on the
//       transposes so that its own keys are the rows:
//       Sᵀ = K Qᵀ, dV += Pᵀ dO, dPᵀ = V dOᵀ, dK += dSᵀ Q   (dK and dV in registers)
// Every product reads bf16 operands: q, k, v (as the bf16 forward read them), dO, and P and
// dS rounded from float32; every sum is float32.
template <int DP>
constexpr size_t bwd3_bytes() {
  return size_t(4) * 64 * (DP + 8) * 2 + 2 * 64 * sizeof(float);
}

template <int DP>
__global__ void __launch_bounds__(128) attention_bwd3_dq(const float* __restrict__ q, const float* __restrict__ k,
                                                         const float* __restrict__ v, const float* __restrict__ lse,
                                                         const float* __restrict__ delta,
                                                         const float* __restrict__ dout, float* __restrict__ dq,
                                                         int64_t Tq, int64_t Tk, int D, float scale, bool causal) {
  using T16 = __nv_bfloat16;
  constexpr int ld = DP + 8, NT = DP / 8;
  extern __shared__ __align__(128) float4 attn3b_smem[];
  uint32_t* Qw = reinterpret_cast<uint32_t*>(attn3b_smem);  // [64][ld] each
  uint32_t* Ow = Qw + 64 * ld / 2;                           // dO
  uint32_t* Kw = Ow + 64 * ld / 2;
  uint32_t* Vw = Kw + 64 * ld / 2;
  const auto* Qe = reinterpret_cast<const unsigned short*>(Qw);
  const auto* Oe = reinterpret_cast<const unsigned short*>(Ow);
  const auto* Ke = reinterpret_cast<const unsigned short*>(Kw);
  const auto* Ve = reinterpret_cast<const unsigned short*>(Vw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows2);
  stage_pairs<T16, DP>(Qw, ld, q + bh * Tq * D, q0, Tq, kRows2, D);
  stage_pairs<T16, DP>(Ow, ld, dout + bh * Tq * D, q0, Tq, kRows2, D);
  int64_t last[2];
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = q0 + warp * 16 + g + 8 * h;
    last[h] = row < Tq ? min(Tk - 1, last_key(row, Tq, Tk, causal)) : -1;
    row_lse[h] = row < Tq ? lse[bh * Tq + row] : 0.0f;
    row_delta[h] = row < Tq ? delta[bh * Tq + row] : 0.0f;
  }
  float acc[NT][4];
  zero(acc);
  const int64_t k_end = block_key_end(q0, Tq, Tk, causal);
  for (int64_t k0 = 0; k0 < k_end; k0 += kKeys2) {
    __syncthreads();
    stage_pairs<T16, DP>(Kw, ld, k + bh * Tk * D, k0, Tk, kKeys2, D);
    stage_pairs<T16, DP>(Vw, ld, v + bh * Tk * D, k0, Tk, kKeys2, D);
    __syncthreads();
    float s[8][4], dp[8][4];
    zero(s);
    zero(dp);
    mma_rows_colsT<T16, DP>(s, Qe + warp * 16 * ld, Ke, ld);
    mma_rows_colsT<T16, DP>(dp, Oe + warp * 16 * ld, Ve, ld);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k0 + 8 * j + 2 * t + (e & 1);
        const float p = key <= last[e >> 1] ? __expf(s[j][e] * scale - row_lse[e >> 1]) : 0.0f;
        s[j][e] = p * (dp[j][e] - row_delta[e >> 1]);  // dS
      }
    uint32_t da[4][4];
    to_a_fragments<T16>(da, s);
    mma_p_vals<T16, DP>(acc, da, Ke, ld);
  }
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = q0 + warp * 16 + g + 8 * (e >> 1);
      const int col = 8 * n + 2 * t + (e & 1);
      if (row < Tq && col < D) dq[(bh * Tq + row) * D + col] = acc[n][e] * scale;
    }
}

template <int DP>
__global__ void __launch_bounds__(128) attention_bwd3_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                                                           const float* __restrict__ v, const float* __restrict__ lse,
                                                           const float* __restrict__ delta,
                                                           const float* __restrict__ dout, float* __restrict__ dk,
                                                           float* __restrict__ dv, int64_t Tq, int64_t Tk, int D,
                                                           float scale, bool causal) {
  using T16 = __nv_bfloat16;
  constexpr int ld = DP + 8, NT = DP / 8;
  extern __shared__ __align__(128) float4 attn3b_smem[];
  uint32_t* Kw = reinterpret_cast<uint32_t*>(attn3b_smem);  // this block's keys, [64][ld] each
  uint32_t* Vw = Kw + 64 * ld / 2;
  uint32_t* Qw = Vw + 64 * ld / 2;  // a tile of queries
  uint32_t* Ow = Qw + 64 * ld / 2;  // and their dO
  float* lse_s = reinterpret_cast<float*>(Ow + 64 * ld / 2);  // [64]: +inf past Tq (P = 0)
  float* delta_s = lse_s + 64;
  const auto* Ke = reinterpret_cast<const unsigned short*>(Kw);
  const auto* Ve = reinterpret_cast<const unsigned short*>(Vw);
  const auto* Qe = reinterpret_cast<const unsigned short*>(Qw);
  const auto* Oe = reinterpret_cast<const unsigned short*>(Ow);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, kb0 = blockIdx.x * int64_t(kKeys2);
  stage_pairs<T16, DP>(Kw, ld, k + bh * Tk * D, kb0, Tk, kKeys2, D);
  stage_pairs<T16, DP>(Vw, ld, v + bh * Tk * D, kb0, Tk, kKeys2, D);
  int64_t key[2];  // this lane's two keys (rows g and g + 8 of the warp's 16)
#pragma unroll
  for (int h = 0; h < 2; ++h) key[h] = kb0 + warp * 16 + g + 8 * h;
  float dk_acc[NT][4], dv_acc[NT][4];
  zero(dk_acc);
  zero(dv_acc);
  // the first query that sees this block's first key (causal: i >= j − (Tk − Tq)), tile-aligned
  const int64_t first_q = causal ? max(int64_t(0), kb0 - (Tk - Tq)) : 0;
  for (int64_t q0 = first_q / kRows2 * kRows2; q0 < Tq; q0 += kRows2) {
    __syncthreads();
    stage_pairs<T16, DP>(Qw, ld, q + bh * Tq * D, q0, Tq, kRows2, D);
    stage_pairs<T16, DP>(Ow, ld, dout + bh * Tq * D, q0, Tq, kRows2, D);
    for (int i = threadIdx.x; i < kRows2; i += blockDim.x) {
      const int64_t row = q0 + i;
      lse_s[i] = row < Tq ? lse[bh * Tq + row] : INFINITY;
      delta_s[i] = row < Tq ? delta[bh * Tq + row] : 0.0f;
    }
    __syncthreads();
    float st[8][4], dpt[8][4];  // Sᵀ and dPᵀ: rows this warp's keys, columns the tile's queries
    zero(st);
    zero(dpt);
    mma_rows_colsT<T16, DP>(st, Ke + warp * 16 * ld, Qe, ld);
    mma_rows_colsT<T16, DP>(dpt, Ve + warp * 16 * ld, Oe, ld);
    uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 8 * j + 2 * t + (e & 1);  // the query, within the tile
        const int64_t row = q0 + c;
        const bool seen = key[e >> 1] < Tk && key[e >> 1] <= last_key(row, Tq, Tk, causal);
        st[j][e] = seen ? __expf(st[j][e] * scale - lse_s[c]) : 0.0f;  // Pᵀ
        dpt[j][e] = st[j][e] * (dpt[j][e] - delta_s[c]);              // dSᵀ
      }
    to_a_fragments<T16>(pa, st);
    mma_p_vals<T16, DP>(dv_acc, pa, Oe, ld);
    to_a_fragments<T16>(pa, dpt);
    mma_p_vals<T16, DP>(dk_acc, pa, Qe, ld);
  }
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t kr = key[e >> 1];
      const int col = 8 * n + 2 * t + (e & 1);
      if (kr < Tk && col < D) {
        dk[(bh * Tk + kr) * D + col] = dk_acc[n][e] * scale;
        dv[(bh * Tk + kr) * D + col] = dv_acc[n][e];
      }
    }
}

// The backward's view of q, k and v: as given (rounding 0), or rounded to bf16 (1) or fp16 (2)
// as the v2 forward rounded them, so that the recomputed probabilities are the forward's
// (their rows sum to 1 against its lse) rather than float32 scores against a 16-bit lse.
template <int R>
__device__ __forceinline__ float operand(float x) {
  if constexpr (R == 1) return __bfloat162float(__float2bfloat16(x));
  if constexpr (R == 2) return __half2float(__float2half_rn(x));
  return x;
}

// Δ_i = dO_i · O_i, a warp per row.
__global__ void attention_delta(const float* __restrict__ o, const float* __restrict__ dout, float* __restrict__ delta,
                                int64_t rows, int D) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  float s = 0.0f;
  for (int d = threadIdx.x & 31; d < D; d += 32) s += o[row * D + d] * dout[row * D + d];
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) delta[row] = s;
}

// dQ: a block owns 64 query rows, streams key tiles. R: operand<R>'s rounding of q, k, v.
template <int NV, int R>
__global__ void __launch_bounds__(256) attention_bwd_dq(const float* __restrict__ q, const float* __restrict__ k,
                                                        const float* __restrict__ v, const float* __restrict__ lse,
                                                        const float* __restrict__ delta,
                                                        const float* __restrict__ dout, float* __restrict__ dq,
                                                        int64_t Tq, int64_t Tk, int D, float scale, bool causal) {
  extern __shared__ float smem[];
  float* Qs = smem;                   // [kRows][D]
  float* dOs = Qs + kRows * D;        // [kRows][D]
  float* Ks = dOs + kRows * D;        // [kKeys][D + 1]
  float* Vs = Ks + kKeys * (D + 1);   // [kKeys][D + 1]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t bh = blockIdx.y, q0 = blockIdx.x * int64_t(kRows);
  const float* kb = k + bh * Tk * D;
  const float* vb = v + bh * Tk * D;
  for (int e = tid; e < kRows * D; e += blockDim.x) {
    const int64_t r = q0 + e / D;
    Qs[e] = r < Tq ? operand<R>(q[(bh * Tq + r) * D + e % D]) : 0.0f;
    dOs[e] = r < Tq ? dout[(bh * Tq + r) * D + e % D] : 0.0f;
  }
  float acc[kRowsPerWarp][NV];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int i = 0; i < NV; ++i) acc[r][i] = 0.0f;
  const int64_t q_last = min(q0 + kRows, Tq) - 1;
  const int64_t k_end = min(Tk, last_key(q_last, Tq, Tk, causal) + 1);
  for (int64_t k0 = 0; k0 < k_end; k0 += kKeys) {
    __syncthreads();
    for (int e = tid; e < kKeys * D; e += blockDim.x) {
      const int j = e / D, d = e % D;
      const bool in = k0 + j < Tk;
      Ks[j * (D + 1) + d] = in ? operand<R>(kb[(k0 + j) * D + d]) : 0.0f;
      Vs[j * (D + 1) + d] = in ? operand<R>(vb[(k0 + j) * D + d]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int lr = warp * kRowsPerWarp + r;
      const int64_t row = q0 + lr;
      if (row >= Tq) continue;
      const int64_t key = k0 + lane;
      const bool valid = key < Tk && key <= last_key(row, Tq, Tk, causal);
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < D; ++d) {
        s += Qs[lr * D + d] * Ks[lane * (D + 1) + d];
        dp += dOs[lr * D + d] * Vs[lane * (D + 1) + d];
      }
      const float p = valid ? __expf(s * scale - lse[bh * Tq + row]) : 0.0f;
      const float ds = p * (dp - delta[bh * Tq + row]);
#pragma unroll 4
      for (int j = 0; j < kKeys; ++j) {
        const float dsj = __shfl_sync(0xffffffffu, ds, j);
#pragma unroll
        for (int i = 0; i < NV; ++i) {
          const int d = lane + 32 * i;
          if (d < D) acc[r][i] += dsj * Ks[j * (D + 1) + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = q0 + warp * kRowsPerWarp + r;
    if (row >= Tq) continue;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int d = lane + 32 * i;
      if (d < D) dq[(bh * Tq + row) * D + d] = acc[r][i] * scale;
    }
  }
}

// dK, dV: a block owns 32 key rows (8 warps x 4), streams query tiles of 32 (one per lane).
template <int NV, int R>
__global__ void __launch_bounds__(256) attention_bwd_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                                                          const float* __restrict__ v, const float* __restrict__ lse,
                                                          const float* __restrict__ delta,
                                                          const float* __restrict__ dout, float* __restrict__ dk,
                                                          float* __restrict__ dv, int64_t Tq, int64_t Tk, int D,
                                                          float scale, bool causal) {
  extern __shared__ float smem[];
  float* Ks = smem;                    // [kKeyRows][D]   (this block's keys)
  float* Vs = Ks + kKeyRows * D;          // [kKeyRows][D]
  float* Qs = Vs + kKeyRows * D;          // [kKeys][D + 1] (a tile of 32 query rows)
  float* dOs = Qs + kKeys * (D + 1);   // [kKeys][D + 1]
  float* Ls = dOs + kKeys * (D + 1);   // [kKeys] lse
  float* Ds = Ls + kKeys;              // [kKeys] delta
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t bh = blockIdx.y, j0 = blockIdx.x * int64_t(kKeyRows);
  for (int e = tid; e < kKeyRows * D; e += blockDim.x) {
    const int64_t j = j0 + e / D;
    Ks[e] = j < Tk ? operand<R>(k[(bh * Tk + j) * D + e % D]) : 0.0f;
    Vs[e] = j < Tk ? operand<R>(v[(bh * Tk + j) * D + e % D]) : 0.0f;
  }
  float ak[kKeyRowsPerWarp][NV], av[kKeyRowsPerWarp][NV];
#pragma unroll
  for (int r = 0; r < kKeyRowsPerWarp; ++r)
#pragma unroll
    for (int i = 0; i < NV; ++i) ak[r][i] = av[r][i] = 0.0f;
  // With the causal mask, query row i sees key j when j <= i + (Tk - Tq): start at the first such row.
  const int64_t i_begin = causal && j0 > Tk - Tq ? j0 - (Tk - Tq) : 0;
  for (int64_t i0 = i_begin - i_begin % kKeys; i0 < Tq; i0 += kKeys) {
    __syncthreads();
    for (int e = tid; e < kKeys * D; e += blockDim.x) {
      const int i = e / D, d = e % D;
      const bool in = i0 + i < Tq;
      Qs[i * (D + 1) + d] = in ? operand<R>(q[(bh * Tq + i0 + i) * D + d]) : 0.0f;
      dOs[i * (D + 1) + d] = in ? dout[(bh * Tq + i0 + i) * D + d] : 0.0f;
    }
    if (tid < kKeys) {
      const bool in = i0 + tid < Tq;
      Ls[tid] = in ? lse[bh * Tq + i0 + tid] : 0.0f;
      Ds[tid] = in ? delta[bh * Tq + i0 + tid] : 0.0f;
    }
    __syncthreads();
    const int64_t row = i0 + lane;  // this lane's query row
#pragma unroll
    for (int r = 0; r < kKeyRowsPerWarp; ++r) {
      const int lj = warp * kKeyRowsPerWarp + r;
      const int64_t key = j0 + lj;
      if (key >= Tk) continue;  // warp-uniform
      const bool valid = row < Tq && key <= last_key(row, Tq, Tk, causal);
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < D; ++d) {
        s += Ks[lj * D + d] * Qs[lane * (D + 1) + d];
        dp += Vs[lj * D + d] * dOs[lane * (D + 1) + d];
      }
      const float p = valid ? __expf(s * scale - Ls[lane]) : 0.0f;
      const float ds = p * (dp - Ds[lane]);
#pragma unroll 2
      for (int i = 0; i < kKeys; ++i) {
        const float pi = __shfl_sync(0xffffffffu, p, i), dsi = __shfl_sync(0xffffffffu, ds, i);
#pragma unroll
        for (int c = 0; c < NV; ++c) {
          const int d = lane + 32 * c;
          if (d < D) {
            av[r][c] += pi * dOs[i * (D + 1) + d];
            ak[r][c] += dsi * Qs[i * (D + 1) + d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kKeyRowsPerWarp; ++r) {
    const int64_t key = j0 + warp * kKeyRowsPerWarp + r;
    if (key >= Tk) continue;
#pragma unroll
    for (int c = 0; c < NV; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        dk[(bh * Tk + key) * D + d] = ak[r][c] * scale;
        dv[(bh * Tk + key) * D + d] = av[r][c];
      }
    }
  }
}

__global__ void causal_mask_k(float* s, int64_t Tq, int64_t Tk, int64_t n) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % Tk, i = (e / Tk) % Tq;
    if (j > i + (Tk - Tq)) s[e] = -INFINITY;
  }
}

void check_attention(const char* op, int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, bool causal) {
  MM_CHECK(D >= 1 && D <= 128, "[cuda] ", op, ": head size ", D, " is not supported by the fused kernel (1..128)");
  MM_CHECK(B * H < 65536, "[cuda] ", op, ": B*H = ", B * H, " exceeds 65535");
  MM_CHECK(!causal || Tk >= Tq, "[cuda] ", op, ": causal attention needs Tk >= Tq (", Tk, " < ", Tq, ")");
}

// f(std::integral_constant<int, DP>()) with DP = D rounded up to 32, 64 or 128: the head size
// the tensor-core kernels work on (zero-padded columns).
template <typename F>
void with_padded_head(int64_t D, F&& f) {
  if (D <= 32)
    f(std::integral_constant<int, 32>());
  else if (D <= 64)
    f(std::integral_constant<int, 64>());
  else
    f(std::integral_constant<int, 128>());
}
template <typename T>
struct Tag {
  using type = T;
};

// v2, v3 or v4 on bf16 (fp16 when fp16) operands.
void attention_forward_16bit(const float* q, const float* k, const float* v, float* o, float* lse, int64_t BH,
                             int64_t Tq, int64_t Tk, int64_t D, float scale, bool causal, int version, bool fp16) {
  const dim3 grid(ceil_div(Tq, kRows2), unsigned(BH));
  auto run = [&](auto tag) {
    using T16 = typename decltype(tag)::type;
    with_padded_head(D, [&](auto dp) {
      constexpr int DP = decltype(dp)::value;
      if (version == 2) {
        constexpr size_t bytes = Fwd2Layout<DP>::bytes;
        allow_dynamic_smem<attention_fwd_v2<T16, DP>>(bytes, "attention_forward");
        attention_fwd_v2<T16, DP><<<grid, 128, bytes, stream()>>>(q, k, v, o, lse, Tq, Tk, int(D), scale, causal);
      } else if (version == 4) {
        DeviceArray<unsigned short> qh(size_t(BH * Tq * DP)), kh(size_t(BH * Tk * DP)), vh(size_t(BH * Tk * DP));
        to16_padded<T16, DP>(q, qh.data(), BH * Tq, D);
        to16_padded<T16, DP>(k, kh.data(), BH * Tk, D);
        to16_padded<T16, DP>(v, vh.data(), BH * Tk, D);
        constexpr size_t bytes = fwd4_bytes<DP>();
        allow_dynamic_smem<attention_fwd_v4<T16, DP>>(bytes, "attention_forward");
        attention_fwd_v4<T16, DP><<<grid, 128, bytes, stream()>>>(qh.data(), kh.data(), vh.data(), o, lse, Tq, Tk,
                                                                   int(D), scale, causal);
      } else {
        constexpr size_t bytes = fwd3_bytes<DP>();
        allow_dynamic_smem<attention_fwd_v3<T16, DP>>(bytes, "attention_forward");
        attention_fwd_v3<T16, DP><<<grid, 128, bytes, stream()>>>(q, k, v, o, lse, Tq, Tk, int(D), scale, causal);
      }
    });
  };
  if (fp16)
    run(Tag<__half>());
  else
    run(Tag<__nv_bfloat16>());
  MM_CUDA_LAUNCHED("attention_forward");
}

}  // namespace

#define MM_ATTN_DISPATCH(NVAR, ...) \
  switch ((D + 31) / 32) {          \
    case 1: { constexpr int NVAR = 1; __VA_ARGS__; break; } \
    case 2: { constexpr int NVAR = 2; __VA_ARGS__; break; } \
    case 3: { constexpr int NVAR = 3; __VA_ARGS__; break; } \
    default: { constexpr int NVAR = 4; __VA_ARGS__; break; } \
  }

void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse, int64_t B, int64_t H,
                       int64_t Tq, int64_t Tk, int64_t D, float scale, bool causal, int version, bool fp16) {
  check_attention("attention_forward", B, H, Tq, Tk, D, causal);
  version = resolve_version("attention", version);
  if (B * H == 0 || Tq == 0) return;
  if (version >= 2) return attention_forward_16bit(q, k, v, o, lse, B * H, Tq, Tk, D, scale, causal, version, fp16);
  const size_t bytes = sizeof(float) * (kRows * D + kKeys * (D + 1) + kKeys * D);
  const dim3 grid(ceil_div(Tq, kRows), unsigned(B * H));
  MM_ATTN_DISPATCH(NV, {
    allow_dynamic_smem<attention_fwd_v1<NV>>(bytes, "attention_forward");
    attention_fwd_v1<NV><<<grid, 256, bytes, stream()>>>(q, k, v, o, lse, Tq, Tk, int(D), scale, causal);
  });
  MM_CUDA_LAUNCHED("attention_forward");
}

void attention_backward(const float* q, const float* k, const float* v, const float* o, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Tq,
                        int64_t Tk, int64_t D, float scale, bool causal, int rounding, int version) {
  check_attention("attention_backward", B, H, Tq, Tk, D, causal);
  MM_CHECK(rounding >= 0 && rounding <= 2, "[cuda] attention_backward: rounding ", rounding, " (0, 1 bf16, 2 fp16)");
  version = version == 0 ? attention_backward_version(rounding) : resolve_version("attention_backward", version);
  MM_CHECK(version == 1 || rounding == 1, "[cuda] attention_backward: version 2 multiplies bf16 operands; rounding ",
           rounding, " asks for ", rounding == 0 ? "float32" : "fp16", " (version 1)");
  if (B * H == 0) return;
  if (Tq == 0) {  // no queries: no key contributed to anything
    MM_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(float) * B * H * Tk * D, stream()), "attention_backward");
    MM_CUDA_CHECK(cudaMemsetAsync(dv, 0, sizeof(float) * B * H * Tk * D, stream()), "attention_backward");
    return;
  }
  if (Tk == 0) {  // no keys: the forward wrote o = 0, so dq = 0
    MM_CUDA_CHECK(cudaMemsetAsync(dq, 0, sizeof(float) * B * H * Tq * D, stream()), "attention_backward");
    return;
  }
  DeviceArray<float> delta(size_t(B * H * Tq));
  attention_delta<<<ceil_div(B * H * Tq, 8), 256, 0, stream()>>>(o, dout, delta.data(), B * H * Tq, int(D));
  MM_CUDA_LAUNCHED("attention_backward");
  if (version == 2) {
    with_padded_head(D, [&](auto dp) {
      constexpr int DP = decltype(dp)::value;
      constexpr size_t bytes = bwd3_bytes<DP>();
      allow_dynamic_smem<attention_bwd3_dq<DP>>(bytes, "attention_backward");
      attention_bwd3_dq<DP><<<dim3(ceil_div(Tq, kRows2), unsigned(B * H)), 128, bytes, stream()>>>(
          q, k, v, lse, delta.data(), dout, dq, Tq, Tk, int(D), scale, causal);
      MM_CUDA_LAUNCHED("attention_backward");
      allow_dynamic_smem<attention_bwd3_dkdv<DP>>(bytes, "attention_backward");
      attention_bwd3_dkdv<DP><<<dim3(ceil_div(Tk, kKeys2), unsigned(B * H)), 128, bytes, stream()>>>(
          q, k, v, lse, delta.data(), dout, dk, dv, Tq, Tk, int(D), scale, causal);
      MM_CUDA_LAUNCHED("attention_backward");
    });
    return;
  }
  const size_t dq_bytes = sizeof(float) * (2 * kRows * D + 2 * kKeys * (D + 1));
  const size_t kv_bytes = sizeof(float) * (2 * kKeyRows * D + 2 * kKeys * (D + 1) + 2 * kKeys);
  auto run = [&](auto rounded) {  // the rounding as a template argument: no branch in the loads
    constexpr int R = decltype(rounded)::value;
    MM_ATTN_DISPATCH(NV, {
      allow_dynamic_smem<attention_bwd_dq<NV, R>>(dq_bytes, "attention_backward");
      attention_bwd_dq<NV, R><<<dim3(ceil_div(Tq, kRows), unsigned(B * H)), 256, dq_bytes, stream()>>>(
          q, k, v, lse, delta.data(), dout, dq, Tq, Tk, int(D), scale, causal);
      MM_CUDA_LAUNCHED("attention_backward");
      allow_dynamic_smem<attention_bwd_dkdv<NV, R>>(kv_bytes, "attention_backward");
      attention_bwd_dkdv<NV, R><<<dim3(ceil_div(Tk, kKeyRows), unsigned(B * H)), 256, kv_bytes, stream()>>>(
          q, k, v, lse, delta.data(), dout, dk, dv, Tq, Tk, int(D), scale, causal);
    });
  };
  if (rounding == 1)
    run(std::integral_constant<int, 1>());
  else if (rounding == 2)
    run(std::integral_constant<int, 2>());
  else
    run(std::integral_constant<int, 0>());
  MM_CUDA_LAUNCHED("attention_backward");
}

void attention_unfused(const float* q, const float* k, const float* v, float* o, float* scratch, int64_t B,
                       int64_t H, int64_t Tq, int64_t Tk, int64_t D, float scale, bool causal) {
  MM_CHECK(!causal || Tk >= Tq, "[cuda] attention_unfused: causal attention needs Tk >= Tq");
  if (B * H == 0 || Tq == 0) return;
  cublas_gemm_batched(/*trans_b=*/true, B * H, Tq, Tk, D, q, k, scratch, scale);
  if (causal) {
    const int64_t n = B * H * Tq * Tk;
    causal_mask_k<<<grid_for(n, 256), 256, 0, stream()>>>(scratch, Tq, Tk, n);
    MM_CUDA_LAUNCHED("attention_unfused");
  }
  softmax(scratch, scratch, B * H * Tq, Tk);
  cublas_gemm_batched(/*trans_b=*/false, B * H, Tq, D, Tk, scratch, v, o);
}

}  // namespace mm::cuda
