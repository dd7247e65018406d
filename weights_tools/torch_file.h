// weights_tools/torch_file.h: PyTorch checkpoints read directly, without Python:
// torch.save zip files (a state dict, a Lightning .ckpt with "state_dict" inside, Hugging
// Face pytorch_model.bin) and TorchScript archives (OpenAI's released CLIP .pt files).
// Tested by tests/weights_tools/test_torch_file.cpp.
//
//   mm::TensorFile f = mm::load_torch_file("ViT-B-32.pt");   // names as in state_dict()
//
// The zip directory is read with minizip; stored entries are memory-mapped views, so a
// model costs no more RAM than its file. The pickle inside goes through the restricted
// decoder of pickle.h: nothing from the file is ever executed.
#pragma once
#include <string>

#include "weights_tools/safetensors.h"

namespace mm {

TensorFile load_torch_file(const std::string& path);

// Any supported weight file by content: safetensors, or a torch zip / TorchScript archive.
TensorFile load_weights(const std::string& path);

}  // namespace mm
