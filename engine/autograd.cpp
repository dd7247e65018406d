// engine/autograd.cpp: the backward engine. Nodes run in dependency order: a node runs
// once every consumer of its outputs has delivered its gradient, so each gradient is
// summed completely before it propagates (as in PyTorch's engine).
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/ops/elementwise.h"

namespace mm {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Grads Node::apply(const Grads& grads) {
  MM_CHECK(!released_, "[backward] trying to backward through the graph a second time (node '", name_,
           "'): its saved tensors were freed by the first backward; pass retain_graph=true to the first");
  return fn_(grads);
}

Grads AccumulateGrad::apply(const Grads& grads) {
  const Tensor& g = grads[0];
  MM_CHECK(g.shape() == leaf_->shape, "[backward] gradient ", g.str(), " for leaf ",
           Tensor(leaf_).str(), " has the wrong shape");
  Tensor gg = g.to(leaf_->dtype);
  if (leaf_->grad) {
    leaf_->grad = add(Tensor(leaf_->grad), gg).impl();
  } else {
    // A fresh contiguous copy: the incoming gradient may alias another tensor (a view, an input).
    leaf_->grad = gg.clone().impl();
  }
  return {};
}

void record_op(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
               BackwardFn fn) {
  auto node = std::make_shared<Node>(name, std::move(fn));
  node->next.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined() && in.requires_grad()) {
      if (in.grad_fn()) {
        e.node = in.grad_fn();
        e.input_nr = in.impl()->output_nr;
      } else {
        e.node = std::make_shared<AccumulateGrad>(in.impl());
      }
    }
    node->next.push_back(e);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& impl = outputs[i].impl();
    node->outputs.push_back({impl->shape, impl->dtype, outputs[i].device()});
    impl->requires_grad = true;
    impl->grad_fn = node;
    impl->output_nr = static_cast<int>(i);
  }
}

namespace {

struct Capture {  // for mm::grad(): where the gradient of each requested input arrives
  std::unordered_map<const TensorImpl*, size_t> leaves;
  std::unordered_map<const Node*, std::vector<std::pair<int, size_t>>> nonleaves;
  std::vector<Tensor>* results = nullptr;
};

void accumulate(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }

void execute(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool retain_graph,
             Capture* capture) {
  NoGradGuard no_grad;
  MM_CHECK(roots.size() == root_grads.size(), "[backward] ", roots.size(), " outputs but ", root_grads.size(),
           " gradients");
  // Seed gradients; roots that are leaves accumulate directly.
  std::vector<std::pair<Edge, Tensor>> seeds;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    MM_CHECK(r.requires_grad(), "[backward] tensor ", r.str(),
             " does not require grad and has no grad_fn (nothing to differentiate)");
    Tensor g = root_grads[i];
    if (!g.defined()) {
      MM_CHECK(r.numel() == 1, "[backward] gradient can be implicit only for one-element outputs; pass a "
               "gradient for ", r.str());
      g = Tensor::ones(r.shape(), r.dtype()).to(r.device());
    }
    MM_CHECK(g.shape() == r.shape(), "[backward] gradient ", g.str(), " does not match output ", r.str());
    MM_CHECK(g.device() == r.device(), "[backward] gradient ", g.str(), " is on ", device_name(g.device()),
             " but output ", r.str(), " is on ", device_name(r.device()));
    Edge e;
    if (r.grad_fn()) {
      e.node = r.grad_fn();
      e.input_nr = r.impl()->output_nr;
    } else {
      e.node = std::make_shared<AccumulateGrad>(r.impl());
    }
    seeds.push_back({e, g});
  }
  // mm::grad() runs only the nodes through which a requested input is reached (as
  // torch.autograd.grad does): the gradient of a loss w.r.t. the last layer's weight
  // then costs the backward of the last layer, not of the whole network. `useful` holds
  // those nodes (found by a post-order walk); without a capture every reachable node runs.
  std::unordered_set<Node*> useful;
  if (capture) {
    auto is_target = [&](Node* n) {
      if (capture->nonleaves.count(n)) return true;
      auto* acc = dynamic_cast<AccumulateGrad*>(n);
      return acc != nullptr && capture->leaves.count(acc->leaf()) > 0;
    };
    std::unordered_set<Node*> done;
    std::vector<std::pair<Node*, size_t>> walk;  // (node, next edge to visit)
    for (auto& s : seeds) walk.push_back({s.first.node.get(), 0});
    while (!walk.empty()) {
      Node* n = walk.back().first;
      const size_t i = walk.back().second;
      if (i == 0 && done.count(n)) {
        walk.pop_back();
        continue;
      }
      if (i < n->next.size()) {
        ++walk.back().second;
        Node* m = n->next[i].node.get();
        if (m && !done.count(m)) walk.push_back({m, 0});
        continue;
      }
      bool u = is_target(n);
      for (const Edge& e : n->next) u = u || (e.node && useful.count(e.node.get()));
      if (u) useful.insert(n);
      done.insert(n);
      walk.pop_back();
    }
  }
  auto runs = [&](Node* n) { return !capture || useful.count(n) > 0; };
  // Count, for every node that runs, how many edges from running nodes point at it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (auto& s : seeds)
    if (runs(s.first.node.get()) && seen.insert(s.first.node.get()).second) stack.push_back(s.first.node.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (!e.node || !runs(e.node.get())) continue;
      ++deps[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }
  std::unordered_map<Node*, Grads> buffers;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // keeps nodes alive while queued
  std::vector<Node*> ready;
  for (auto& s : seeds) {
    Node* n = s.first.node.get();
    keep[n] = s.first.node;
    auto& buf = buffers[n];
    buf.resize(std::max<size_t>(n->outputs.size(), 1));
    accumulate(buf[s.first.input_nr], s.second);
  }
  for (auto& s : seeds) {
    Node* n = s.first.node.get();
    if (runs(n) && deps[n] == 0 && std::find(ready.begin(), ready.end(), n) == ready.end()) ready.push_back(n);
    // A root reachable from another root waits for it: its deps count covers that.
  }
  std::vector<std::shared_ptr<Node>> visited;
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    std::shared_ptr<Node> hold = keep[n];
    keep.erase(n);
    visited.push_back(hold);
    auto buf_it = buffers.find(n);
    Grads in_grads(n->next.size());
    if (buf_it != buffers.end()) {  // a node that received no gradient at all does not run
      Grads grads = std::move(buf_it->second);
      buffers.erase(buf_it);
      for (size_t i = 0; i < n->outputs.size(); ++i)
        if (!grads[i].defined())
          grads[i] = Tensor::zeros(n->outputs[i].shape, n->outputs[i].dtype).to(n->outputs[i].device);
      if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
        if (!capture) {
          n->apply(grads);
        } else {  // mm::grad() reports requested leaves and never touches .grad
          auto it = capture->leaves.find(acc->leaf());
          if (it != capture->leaves.end()) accumulate((*capture->results)[it->second], grads[0]);
        }
      } else {
        bool feeds_useful = !capture;  // a requested non-leaf with nothing useful below stops here
        if (capture) {
          auto it = capture->nonleaves.find(n);
          if (it != capture->nonleaves.end())
            for (auto& [nr, idx] : it->second) accumulate((*capture->results)[idx], grads[nr]);
          for (const Edge& e : n->next) feeds_useful = feeds_useful || (e.node && useful.count(e.node.get()));
        }
        if (feeds_useful) in_grads = n->apply(grads);
        MM_CHECK(in_grads.size() == n->next.size(), "[backward] node '", n->name(), "' returned ",
                 in_grads.size(), " gradients for ", n->next.size(), " inputs");
      }
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.node || !runs(e.node.get())) continue;
      Node* m = e.node.get();
      if (in_grads[i].defined()) {
        auto& buf = buffers[m];
        buf.resize(std::max<size_t>(m->outputs.size(), 1));
        accumulate(buf[e.input_nr], in_grads[i]);
      }
      keep[m] = e.node;
      if (--deps[m] == 0) ready.push_back(m);
    }
  }
  if (!retain_graph)
    for (auto& n : visited) n->release();
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  execute(roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> results(inputs.size());
  Capture capture;
  capture.results = &results;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    MM_CHECK(in.requires_grad(), "[grad] input ", i, " (", in.str(), ") does not require grad");
    if (in.grad_fn())
      capture.nonleaves[in.grad_fn().get()].push_back({in.impl()->output_nr, i});
    else
      capture.leaves[in.impl().get()] = i;
  }
  std::vector<Tensor> g = grad_outputs;
  if (g.empty()) g.resize(outputs.size());
  execute(outputs, g, retain_graph, &capture);
  return results;
}

}  // namespace mm
