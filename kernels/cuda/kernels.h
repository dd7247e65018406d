// kernels/cuda/kernels.h: mm's own CUDA kernels, as host functions over device pointers.
// Reading order: after runtime.h. Each kernel lives in kernels/cuda/NAME.cu with numbered
// versions, from the simplest correct one to the fast one; `version` 0 means the default,
// and the defaults are named in one place, default_version() below. Every version is checked
// against the engine's CPU ops (tests/cuda/) and timed by `mmbench ... --device cuda`.
// All pointers are device pointers; tensors are dense and row-major; everything is float32
// unless a name says bf16. All work runs on mm::cuda::stream().
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace mm::cuda {

// The default version of each kernel family (what version 0 selects), and how many exist.
int default_version(const char* family);
// The tensor-core attention forward for `keys` keys (defaults.cu: v3 for short sequences, v4 for long).
int attention_16bit_version(int64_t keys);
// The attention backward that version 0 picks for a rounding of q, k, v (defaults.cu).
int attention_backward_version(int rounding);
int version_count(const char* family);

// ---- elementwise.cu -------------------------------------------------------------------------
// v1: one element per thread, grid-stride. v2: four per thread through 16-byte loads.
enum class Unary { neg, exp, silu, quick_gelu, gelu_tanh, relu };
enum class Binary { add, sub, mul, div, pow };
void unary(Unary op, const float* x, float* y, int64_t n, int version = 0);
void binary(Binary op, const float* a, const float* b, float* y, int64_t n, int version = 0);
// y[r, c] = x[r, c] + bias[c] (a linear layer's bias, broadcast over rows)
void add_rows(const float* x, const float* bias, float* y, int64_t rows, int64_t cols);
// dx for y = silu(x) / quick_gelu(x): dx = dy * f'(x)
void unary_backward(Unary op, const float* x, const float* dy, float* dx, int64_t n);
// Elementwise maps with up to two scalar parameters (a, b), forward and backward, for the
// engine's math ops on device tensors. The backward reads x or y (the forward's output) as the
// derivative needs: dx = dy * f'(x). clamp(a, b) passes dy inside [a, b];
// clamp_grad_rule (backward only) passes dy except where it would push y = clamp(x, a, b)
// further outside, i.e. where dy * (x - y) < 0 (VQGAN+CLIP's clamp with gradient).
enum class Map { abs, asin, sqrt, rsqrt, log, square, tanh, sigmoid, clamp, pow, clamp_grad_rule, sin, cos, gelu, gelu_tanh };
void map(Map op, const float* x, float* y, int64_t n, float a = 0, float b = 0);
void map_backward(Map op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float a = 0,
                  float b = 0);
// y = max(a, b) / min(a, b) over dense operands of one shape (ties pick a); the backward
// splits dy: da = dy where a was picked, db = dy elsewhere.
void maximum(const float* a, const float* b, float* y, int64_t n, bool min);
void maximum_backward(const float* a, const float* b, const float* dy, float* da, float* db, int64_t n, bool min);
// One Adam(W) step over n parameters, each element in float64 as the CPU optimiser does.
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, double step_size, double sqrt_bc2);
// Comparisons of dense operands of one shape into bool (one byte: 0 or 1), the selection
// y = c ? a : b, and logical not.
enum class Cmp { eq, ne, lt, le, gt, ge };
void compare(Cmp op, const float* a, const float* b, bool* y, int64_t n);
void select(const bool* c, const float* a, const float* b, float* y, int64_t n);
void logical_not(const bool* x, bool* y, int64_t n);
// Element type conversion on the device, types numbered as mm::DType: 0 float32, 1 float16,
// 2 bfloat16, 3 float64, 4 int32, 5 int64, 6 uint8, 7 bool (nonzero -> 1). Floats to
// integers truncate toward zero (as a C++ cast); to 16-bit floats rounds to nearest even.
void convert(const void* x, int from, void* y, int to, int64_t n);
void copy(const float* x, float* y, int64_t n);  // device-to-device, the bandwidth ceiling
void to_bf16(const float* x, __nv_bfloat16* y, int64_t n);

// ---- copy.cu: dst[i] = src[i] over `shape` (ndim <= 8), each side with its own element
// strides (0 where a dim is broadcast); elements of elem_size 1, 2, 4 or 8 bytes, copied as
// bits. The engine's contiguous(), cat, copy_ and fill_ on device tensors.
void strided_copy(void* dst, const int64_t* dst_strides, const void* src, const int64_t* src_strides,
                  const int64_t* shape, int ndim, int elem_size);

// ---- index.cu: index maps along one axis, gathers, extremes -----------------------------------
// x viewed as [outer, n_in, inner] -> y [outer, n_out, inner] with y[o, j, i] = x[o, map[j], i],
// or `fill` where map[j] < 0 (pad, index_select on any dim, nearest resampling). The backward
// adds dy into dx (overwritten first) at the mapped rows; rows mapped twice add up (atomics).
void index_axis(const float* x, const int64_t* map, float* y, int64_t outer, int64_t n_in, int64_t n_out,
                int64_t inner, float fill);
void index_axis_backward(const float* dy, const int64_t* map, float* dx, int64_t outer, int64_t n_in, int64_t n_out,
                         int64_t inner);
// Along the last dim: y[r, j] = x[r, idx[r, j]] for x [rows, n], idx [rows, m] (torch.gather);
// the backward adds dy[r, j] into dx[r, idx[r, j]] (dx overwritten with zeros first).
void gather_last(const float* x, const int64_t* idx, float* y, int64_t rows, int64_t n, int64_t m);
void gather_last_backward(const float* dy, const int64_t* idx, float* dx, int64_t rows, int64_t n, int64_t m);
// The max (or min) of each row of x [rows, cols] and its first index; NaN wins, as torch.
// v1: a thread per row. v2: a warp per row (coalesced reads, a shuffle reduction).
void row_extreme(const float* x, float* value, int64_t* index, int64_t rows, int64_t cols, bool max,
                 int version = 0);

// ---- softmax.cu: over the last dimension of [rows, cols] --------------------------------------
// v1: a block per row, three passes (max, sum, write). v2: a warp per row, one read with an
// online max/sum in registers (rows up to 1024 wide stay in registers), then the write.
void softmax(const float* x, float* y, int64_t rows, int64_t cols, int version = 0);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);
// Reductions over the last dimension.
void row_sum(const float* x, float* y, int64_t rows, int64_t cols);
void row_max(const float* x, float* y, int64_t rows, int64_t cols);

// ---- norm.cu ------------------------------------------------------------------------------
// layer_norm over the last dimension (cols); weight/bias may be null. mean/rstd [rows] are
// written for the backward (may be null when not needed).
// v1: a block per row, two passes. v2: a warp per row, the row held in registers, one read.
void layer_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                int64_t cols, float eps, int version = 0);
// dw/db may be null; they are overwritten (not accumulated).
void layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dw, float* db, int64_t rows, int64_t cols);
// group_norm of x [N, C, HW] in G groups with per-channel weight/bias (may be null), and an
// optional fused SiLU on the output (taming's norm + swish). mean/rstd [N*G].
// v1: a block per group. v2: few groups (N*G well below the GPU's blocks) split into chunks,
// a block each (statistics combined across the chunks); many groups run v1.
void group_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t N,
                int64_t C, int64_t HW, int64_t G, float eps, bool silu, int version = 0);
// With silu, dy is the gradient of silu(norm(x)); b must then be given as in the forward.
void group_norm_backward(const float* x, const float* w, const float* b, const float* mean, const float* rstd,
                         const float* dy, float* dx, float* dw, float* db, int64_t N, int64_t C, int64_t HW,
                         int64_t G, bool silu, int version = 0);

// ---- gemm.cu: C[M, N] = A[M, K] · B[K, N] (row-major; trans_a/trans_b read A as [K, M], B as [N, K])
// v1: a thread per output, straight from global memory. v2: 32x32 tiles in shared memory.
// v3: 128x128 block tiles, 8x8 outputs per thread in registers (the classic SGEMM). The
// tensor-core rungs are gemm_bf16 (WMMA, then mma.sync) and gemm_bf16_nt (wgmma, sm_90).
// The production path is cublas_gemm.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
          int version = 0);
// bf16 operands, float32 accumulate and output; row-major, A [M, K], B [K, N].
// v1: WMMA 16x16x16 fragments, a warp per 32x32 tile, operands staged in shared memory.
// v2: mma.sync m16n8k16 + ldmatrix (ptx.cuh), 128x128 block tiles, 16-byte loads of the next
// k-tile overlapping the products of this one.
void gemm_bf16(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C,
               int version = 0);
// C [M, N] = A [M, K] · B [N, K]ᵀ (bf16, float32 accumulate and output; the layout of a linear
// layer's weights): Hopper's wgmma (gemm_sm90.cu), 128x128 tiles, a 3-stage cp.async ring.
// Needs an sm_90 GPU, K a multiple of 8 and 16-byte aligned A and B (else a clear error).
void gemm_bf16_nt(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C);
// The tensor-core layouts ptx.cuh relies on, checked on whatever runs the kernels: one warp
// computes d = A·B + C for A [16][16], B [16][8] (row-major 16-bit: bf16, or fp16 when fp16)
// and C [16][8] float through ldmatrix and mma.sync, B loaded once transposed from [16][8] and
// once from a [8][16] copy: d[0..127] and d[128..255] must both be A·B + C.
void mma_probe(const void* a, const void* b, const float* c, float* d, bool fp16);
// cuBLAS: float32 (tf32 tensor cores when allow_tf32), and 16-bit operands (bf16, or fp16
// when fp16) with float32 accumulate and output: the tensor-core path of --precision.
void cublas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, const float* B,
                 float* C, bool allow_tf32 = false);
void cublas_gemm_half(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, const void* B,
                      float* C, bool fp16);
void cublas_gemm_bf16(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C);
// Batched: C_b = A_b · B_b^T (attention scores) and C_b = A_b · B_b (probabilities · values).
void cublas_gemm_batched(bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                         const float* B, float* C, float alpha = 1.0f);
void cublas_gemm_half_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const void* A, const void* B, float* C,
                              bool fp16);

// ---- attention.cu: fused attention, q/k/v/o [B, H, T, D] (D = 64 or 128 or any <= 128) ---------
// Flash-attention style: a block takes 64 query rows, streams the keys and values through
// shared memory in tiles, keeps the running max and sum per row (online softmax) and never
// writes the T x T matrix. lse [B, H, Tq] (the log-sum-exp of each row's scaled scores) is
// kept for the backward. causal: query i sees keys j <= i + (Tk - Tq).
// v1: float32 on the CUDA cores. v2..v4: tensor cores on q, k, v and the probabilities
// rounded to bf16 (fp16 when fp16), float32 softmax statistics and sums; v2 through WMMA with
// the running output in shared memory, v3 through mma.sync with S, P and O in registers, v4
// v3 on 16-bit copies of q, k, v (one conversion pass) with K and V tiles double-buffered by
// cp.async. --precision bf16|fp16 runs attention_16bit_version(Tk). fp16 is ignored by v1.
void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse, int64_t B, int64_t H,
                       int64_t Tq, int64_t Tk, int64_t D, float scale, bool causal, int version = 0,
                       bool fp16 = false);
// Recomputes the probabilities from lse tile by tile: dq, dk, dv (overwritten). After a 16-bit
// forward, rounding 1 (bf16) or 2 (fp16) reads q, k and v rounded as it did, so that the
// probabilities match its lse; 0 reads them as they are (after v1).
// v1: float32 arithmetic on the CUDA cores (any rounding). v2: tensor cores (mma.sync), bf16
// only (rounding 1): every product on bf16 operands (q, k, v, dout, and the probabilities and
// dS rounded), float32 sums. Version 0: attention_backward_version(rounding), v2 after bf16.
void attention_backward(const float* q, const float* k, const float* v, const float* o, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Tq,
                        int64_t Tk, int64_t D, float scale, bool causal, int rounding = 0, int version = 0);
// The composition the fused kernel is measured against: S = scale·QKᵀ (cuBLAS), a causal
// mask, softmax (ours), O = P·V (cuBLAS). `scratch` holds B·H·Tq·Tk floats.
void attention_unfused(const float* q, const float* k, const float* v, float* o, float* scratch, int64_t B,
                       int64_t H, int64_t Tq, int64_t Tk, int64_t D, float scale, bool causal);

// ---- vq.cu: nearest codebook rows ----------------------------------------------------------------
// For z [N, D] and codebook e [K, D]: idx[n] = argmin_k |z_n - e_k|², computed as
// |e_k|² - 2 z_n·e_k (|z_n|² does not change the argmin; ties go to the lower k, as torch).
// e_sq [K] = |e_k|² (vq_code_norms). v1: a thread per row of z, the codebook from global
// memory. v2: fused and tiled: a block takes 64 rows of z, streams codebook tiles through
// shared memory, keeps each row's best (distance, index) in registers: the N x K distance
// matrix never exists.
void vq_code_norms(const float* e, float* e_sq, int64_t K, int64_t D);
void vq_nearest(const float* z, const float* e, const float* e_sq, int64_t* idx, int64_t N, int64_t K, int64_t D,
                int version = 0);
// The baseline: S = z·eᵀ by cuBLAS into scratch [N, K], then a separate argmin kernel.
void vq_nearest_unfused(const float* z, const float* e, const float* e_sq, int64_t* idx, float* scratch, int64_t N,
                        int64_t K, int64_t D);
// out[n] = e[idx[n]] (the straight-through forward); de[idx[n]] += dout[n] (the codebook's
// gradient: atomics, since rows repeat). de must be zeroed first.
void gather_rows(const float* e, const int64_t* idx, float* out, int64_t N, int64_t D);
void scatter_add_rows(const float* dout, const int64_t* idx, float* de, int64_t N, int64_t D);
// Embedding lookup with int64 ids: the text tower's token embedding.
inline void embedding(const float* table, const int64_t* ids, float* out, int64_t N, int64_t D) {
  gather_rows(table, ids, out, N, D);
}

// ---- conv.cu: conv2d, x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW], bias may be null ----
// v1: implicit GEMM: the output pixels are the GEMM's rows, the weights its columns, the
// im2col matrix is read straight from x inside the tile loads and never built. The production
// path is cudnn_conv2d.
void conv2d(const float* x, const float* w, const float* bias, float* y, int64_t N, int64_t C, int64_t H,
            int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad, int version = 0);
// dx (overwritten) from dy: an implicit GEMM of dy with the flipped, transposed weights.
void conv2d_backward_data(const float* dy, const float* w, float* dx, int64_t N, int64_t C, int64_t H, int64_t W,
                          int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad);
// cols [N·OH·OW, C·KH·KW]: the patches of x, one row per output pixel (zeros where the window
// leaves the image); the weight gradient is dyᵀ·cols (conv2d's backward, as a GEMM), and with
// 16-bit cols (dtype as mm::DType: 0 float32, 1 float16, 2 bfloat16) cols·Wᵀ is the forward
// of --precision bf16/fp16.
void im2col(const float* x, void* cols, int dtype, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
            int64_t KW, int64_t stride, int64_t pad);
// The adjoint of im2col (float32 cols) for the output rows [oh0, oh1) of N samples: cols
// [N·(oh1−oh0)·OW, C·KH·KW]; each input pixel gets the sum of the cols entries of the band's
// windows that cover it (added to dx with accumulate, else written; pixels no window of the
// band covers are left alone). conv2d's input gradient is col2im(dy·W).
void col2im(const float* cols, float* dx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
            int64_t stride, int64_t pad, int64_t oh0, int64_t oh1, bool accumulate);
bool have_cudnn();  // false when mm was built without cuDNN (the cudnn_ functions then throw)
void cudnn_conv2d(const float* x, const float* w, const float* bias, float* y, int64_t N, int64_t C, int64_t H,
                  int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad);
void cudnn_conv2d_backward_data(const float* dy, const float* w, float* dx, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad);

// ---- resample.cu: x [N*C planes of H, W] --------------------------------------------------------
void upsample_nearest2x(const float* x, float* y, int64_t planes, int64_t H, int64_t W);
// dx [planes, H, W] = the sum of each 2x2 block of dy [planes, 2H, 2W]
void upsample_nearest2x_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W);
// Adaptive average pooling to OH x OW (bins [floor(o·H/OH), ceil((o+1)·H/OH)), as torch), and
// its backward (a gather over the bins that hold each input pixel: no atomics).
void adaptive_avg_pool2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW);
void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW);
// Bilinear perspective warp of x [B, C, H, W] to [B, C, OH, OW]: output pixel centre (j+½, i+½)
// maps through the row-major 3x3 m[b] (float64, device memory) to input coordinates; border
// padding clamps them into the image, zeros padding reads 0 outside. The backward scatters
// dy into dx (overwritten) with atomics.
void warp_perspective(const float* x, const double* m, float* y, int64_t B, int64_t C, int64_t H, int64_t W,
                      int64_t OH, int64_t OW, bool border);
void warp_perspective_backward(const float* dy, const double* m, float* dx, int64_t B, int64_t C, int64_t H,
                               int64_t W, int64_t OH, int64_t OW, bool border);
// Window pooling of x [planes, H, W] -> [planes, OH, OW] with kernel (kh, kw), stride (sh, sw)
// and implicit padding (ph, pw), as torch's avg_pool2d / max_pool2d. Average: the divisor is
// the window clipped to the padded input (count_pad) or to the input. Max: padding never
// wins, NaN does; argmax [planes, OH, OW] (h·W + w within the plane) is kept for the backward.
struct Pool2d {
  int64_t planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
};
void avg_pool2d_window(const float* x, float* y, const Pool2d& g, bool count_pad);
void avg_pool2d_window_backward(const float* dy, float* dx, const Pool2d& g, bool count_pad);  // dx overwritten
void max_pool2d(const float* x, float* y, int64_t* argmax, const Pool2d& g);
void max_pool2d_backward(const float* dy, const int64_t* argmax, float* dx, const Pool2d& g);  // dx overwritten

}  // namespace mm::cuda
