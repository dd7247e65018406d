// engine/optim.cpp: the optimiser updates, elementwise loops over each parameter.
#include "engine/optim.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    MM_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "[optimizer] parameter ", i, " (",
             p.defined() ? p.str() : "undefined", ") must be a leaf that requires grad");
    MM_CHECK(p.is_contiguous(), "[optimizer] parameter ", i, " ", p.str(), " must be contiguous");
  }
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

static void check_grad(const Tensor& p, const Tensor& g, size_t i) {
  MM_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype(), "[optimizer] gradient ", g.str(), " of parameter ", i,
           " ", p.str(), " does not match it");
}

SGD::SGD(std::vector<Tensor> params, SGDOptions options) : Optimizer(std::move(params)), opt_(options) {
  lr_ = opt_.lr;
  momentum_buffer_.resize(params_.size());
}

void SGD::step() {
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, i);
    g = g.contiguous();
    const bool first = !momentum_buffer_[i].defined();
    if (opt_.momentum != 0 && first) momentum_buffer_[i] = Tensor::zeros(p.shape(), p.dtype()).to(p.device());
    dispatch_float(p.dtype(), "SGD", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* pp = p.data<T>();
      const T* gp = g.data<T>();
      T* vp = opt_.momentum != 0 ? momentum_buffer_[i].data<T>() : nullptr;
      const double lr = lr_, mom = opt_.momentum, damp = opt_.dampening, wd = opt_.weight_decay;
      const bool nesterov = opt_.nesterov;
      parallel_for(0, p.numel(), 16384, [&](int64_t a, int64_t b) {
        for (int64_t j = a; j < b; ++j) {
          double d = gp[j] + wd * pp[j];
          if (vp) {
            const double v = first ? d : mom * vp[j] + (1 - damp) * d;  // torch: buffer = d on first step
            vp[j] = static_cast<T>(v);
            d = nesterov ? d + mom * v : v;
          }
          pp[j] = static_cast<T>(pp[j] - lr * d);
        }
      });
    });
  }
}

std::vector<std::pair<std::string, Tensor>> SGD::state() const {
  std::vector<std::pair<std::string, Tensor>> s;
  for (size_t i = 0; i < momentum_buffer_.size(); ++i)
    if (momentum_buffer_[i].defined()) s.push_back({"momentum_buffer." + std::to_string(i), momentum_buffer_[i]});
  return s;
}

void SGD::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  for (const auto& [name, t] : state) {
    MM_CHECK(name.rfind("momentum_buffer.", 0) == 0, "[SGD] unknown state entry '", name, "'");
    const size_t i = std::stoul(name.substr(16));
    MM_CHECK(i < params_.size() && t.shape() == params_[i].shape(), "[SGD] state '", name, "' ", t.str(),
             " does not match the parameters");
    momentum_buffer_[i] = t.contiguous().clone();
  }
}

Adam::Adam(std::vector<Tensor> params, AdamOptions options, WeightDecay decay)
    : Optimizer(std::move(params)), opt_(options), decay_(decay) {
  lr_ = opt_.lr;
  for (const Tensor& p : params_) {
    exp_avg_.push_back(Tensor::zeros(p.shape(), p.dtype()).to(p.device()));  // the moments live with p
    exp_avg_sq_.push_back(Tensor::zeros(p.shape(), p.dtype()).to(p.device()));
  }
}

void Adam::step() {
  NoGradGuard ng;
  ++step_;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, i);
    g = g.contiguous();
    if (p.device() == Device::cuda) {
      cuda_ops::adam_step(p, g, exp_avg_[i], exp_avg_sq_[i], lr_, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay,
                          decay_ == WeightDecay::decoupled, lr_ / bc1, std::sqrt(bc2));
      continue;
    }
    dispatch_float(p.dtype(), "Adam", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* pp = p.data<T>();
      const T* gp = g.data<T>();
      T* m = exp_avg_[i].data<T>();
      T* v = exp_avg_sq_[i].data<T>();
      const double lr = lr_, b1 = opt_.beta1, b2 = opt_.beta2, eps = opt_.eps, wd = opt_.weight_decay;
      const bool decoupled = decay_ == WeightDecay::decoupled;
      const double step_size = lr / bc1, sqrt_bc2 = std::sqrt(bc2);
      parallel_for(0, p.numel(), 16384, [&](int64_t a, int64_t b) {
        for (int64_t j = a; j < b; ++j) {
          double pj = pp[j];
          double gj = gp[j];
          if (decoupled) pj *= 1 - lr * wd;
          else gj += wd * pj;
          const double mj = b1 * m[j] + (1 - b1) * gj;
          const double vj = b2 * v[j] + (1 - b2) * gj * gj;
          m[j] = static_cast<T>(mj);
          v[j] = static_cast<T>(vj);
          pp[j] = static_cast<T>(pj - step_size * mj / (std::sqrt(vj) / sqrt_bc2 + eps));
        }
      });
    });
  }
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  std::vector<std::pair<std::string, Tensor>> s;
  s.push_back({"step", Tensor::scalar(static_cast<double>(step_), DType::i64)});
  for (size_t i = 0; i < params_.size(); ++i) {
    s.push_back({"exp_avg." + std::to_string(i), exp_avg_[i]});
    s.push_back({"exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]});
  }
  return s;
}

void Adam::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  for (const auto& [name, t] : state) {
    if (name == "step") {
      step_ = static_cast<int64_t>(t.item());
      continue;
    }
    const size_t dot = name.find('.');
    MM_CHECK(dot != std::string::npos, "[Adam] unknown state entry '", name, "'");
    const std::string kind = name.substr(0, dot);
    const size_t i = std::stoul(name.substr(dot + 1));
    MM_CHECK(i < params_.size() && t.shape() == params_[i].shape(), "[Adam] state '", name, "' ", t.str(),
             " does not match the parameters");
    const Tensor value = t.to(params_[i].dtype()).to(params_[i].device()).contiguous().clone();  // with the parameter
    if (kind == "exp_avg") exp_avg_[i] = value;
    else if (kind == "exp_avg_sq") exp_avg_sq_[i] = value;
    else throw Error(str_cat("[Adam] unknown state entry '", name, "'"));
  }
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard ng;
  double total = 0;  // sum of squares over every gradient (engine reductions, double-accumulated)
  for (const Tensor& p : params)
    if (p.grad().defined()) total += sum(square(p.grad())).item();
  const double norm = std::sqrt(total);
  if (norm > max_norm && norm > 0) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params)
      if (p.grad().defined()) Tensor(p).set_grad(mul(p.grad(), scale));
  }
  return norm;
}

}  // namespace mm
