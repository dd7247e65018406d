// engine/autograd.h: define-by-run reverse-mode autodiff.
// Reading order: after tensor.h and random.h; every op in engine/ops/ records itself here.
//
// An op computes its outputs, then (when grad mode is on and an input requires grad)
// records a Node holding a backward function and one Edge per input:
//
//   Tensor out = ...forward...;
//   if (needs_grad({a, b}))
//     record_op("mul", {a, b}, {out}, [a, b](const Grads& g) -> Grads {
//       return {sum_to(mul(g[0], b), a.shape()), sum_to(mul(g[0], a), b.shape())};
//     });
//
// The same call is how users write an op with a custom backward (straight-through
// estimators, clamp-with-gradient): see custom ops in engine/ops/elementwise.h.
// Rule: a backward may capture inputs, but must capture outputs via out.detach(), or the
// output would own its own grad_fn through the closure and never be freed.
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mm {

using Grads = std::vector<Tensor>;
using BackwardFn = std::function<Grads(const Grads& grad_outputs)>;

struct Edge {
  std::shared_ptr<Node> node;  // null when the input needs no gradient
  int input_nr = 0;            // which output of `node` the input was
};

class Node {
 public:
  struct OutputMeta {
    Shape shape;
    DType dtype;
    Device device;
  };
  Node(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  virtual ~Node() = default;

  // grads: one per output (zeros where an output received none). Returns one gradient
  // per input edge; an undefined Tensor means "no gradient for this input".
  virtual Grads apply(const Grads& grads);
  // Drops the backward closure and with it every saved tensor.
  virtual void release() { fn_ = nullptr; released_ = true; }

  const std::string& name() const { return name_; }
  bool released() const { return released_; }

  std::vector<Edge> next;           // one per input
  std::vector<OutputMeta> outputs;  // one per output

 protected:
  std::string name_;
  BackwardFn fn_;
  bool released_ = false;
};

// The sink for a leaf: adds the incoming gradient into leaf.grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
      : Node("AccumulateGrad", nullptr), leaf_(std::move(leaf)) {}
  Grads apply(const Grads& grads) override;
  void release() override {}  // leaves outlive graphs
  const TensorImpl* leaf() const { return leaf_.get(); }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// ---- grad mode ------------------------------------------------------------------------
bool grad_enabled();
// While alive, ops record nothing (inference, optimiser updates, backward itself).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any of the tensors requires grad.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `outputs` as produced from `inputs` by op `name` with backward `fn`.
// Marks the outputs requires_grad and points their grad_fn at the new node.
void record_op(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
               BackwardFn fn);

// Runs backpropagation from `roots` with the given gradients (see Tensor::backward).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

// Gradients of `outputs` (with `grad_outputs`) w.r.t. `inputs`, returned instead of being
// accumulated into .grad. Inputs that the outputs do not depend on get undefined tensors.
// Only the part of the graph that leads to `inputs` runs.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace mm
