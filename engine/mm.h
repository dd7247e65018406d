// engine/mm.h: the whole engine in one include, for apps, tests and benchmarks.
#pragma once
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"
#include "engine/optim.h"
#include "engine/parallel.h"
#include "engine/random.h"
#include "engine/tensor.h"
