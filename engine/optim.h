// engine/optim.h: optimisers: SGD with momentum, Adam and AdamW, as torch.optim defines them.
// Reading order: after engine/ops/. Tested by tests/engine/test_optim.cpp.
//
//   mm::AdamW opt(model_params, {.lr = 1e-3, .weight_decay = 0.01});
//   for (...) { opt.zero_grad(); loss = ...; loss.backward(); opt.step(); }
//
// Parameters are leaf tensors (float32 or float64) updated in place; a parameter whose
// .grad is undefined is skipped, as in PyTorch. state()/load_state() expose the moment
// buffers and step count by name, for checkpoints.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const std::vector<Tensor>& params() const { return params_; }
  // Named state tensors ("step", "exp_avg.3", ...) for saving and restoring.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state) = 0;

 protected:
  std::vector<Tensor> params_;
  double lr_ = 0;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// v = momentum * v + (1 - dampening) * (g + wd * p); p -= lr * (nesterov ? g + momentum * v : v)
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

 private:
  SGDOptions opt_;
  std::vector<Tensor> momentum_buffer_;  // undefined until the first step of a parameter
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

enum class WeightDecay { l2, decoupled };  // Adam adds wd*p to g; AdamW shrinks p directly

// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options, WeightDecay decay = WeightDecay::l2);
  void step() override;
  int64_t steps() const { return step_; }
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

 private:
  AdamOptions opt_;
  WeightDecay decay_;
  int64_t step_ = 0;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, WeightDecay::decoupled) {}
};

// Rescales all gradients so that their global L2 norm is at most max_norm; returns the
// norm before clipping (torch.nn.utils.clip_grad_norm_).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mm
