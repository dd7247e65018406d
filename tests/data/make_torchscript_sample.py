# tests/data/make_torchscript_sample.py: makes torchscript_sample.pt, a tiny TorchScript
# archive laid out like OpenAI's released CLIP files (a scripted module tree with fp16 and
# fp32 parameters and an int64 buffer), for tests/weights_tools/test_torch_file.cpp.
# Run with Debian's python3-torch:  /usr/bin/python3 tests/data/make_torchscript_sample.py
import torch

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(4)
        self.proj = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.proj(self.ln_1(x))

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = torch.nn.Sequential(Block(), Block())
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.5))
        self.register_buffer("context_length", torch.tensor(77))

    def forward(self, x):
        return self.visual[0].proj(x[..., :4]) * self.logit_scale

torch.manual_seed(0)
m = Model()
for name, p in m.named_parameters():
    p.data.normal_()
m.visual[0].proj.half()  # mixed precision, as OpenAI's files
s = torch.jit.script(m)
s.save("torchscript_sample.pt")
sd = m.state_dict()
with open("torchscript_sample_expected.txt", "w") as f:
    for k, v in sd.items():
        f.write(f"{k} {str(v.dtype).replace('torch.', '')} {list(v.shape)} {float(v.double().sum()):.9g}\n")
print(open("torchscript_sample_expected.txt").read())

# lightning_sample.ckpt: a Lightning-style checkpoint with the extras real ones carry (a
# callback object of a user class, optimizer state, hyper-parameters) and one object whose
# unpickling would run a shell command in Python. mm must load the tensors and run nothing.
import os, argparse

class ModelCheckpoint:
    def __init__(self):
        self.best_model_score = torch.tensor(0.5)
        self.monitor = "val/rec_loss"

class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mm_pickle_exploit_ran",))

ckpt = {
    "epoch": 3,
    "global_step": 1000,
    "pytorch-lightning_version": "1.0.8",
    "state_dict": {"encoder.conv_in.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                   "loss.discriminator.main.0.weight": torch.ones(2)},
    "callbacks": {ModelCheckpoint: ModelCheckpoint()},
    "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}],
    "hyper_parameters": argparse.Namespace(embed_dim=32),
    "exploit": Exploit(),
}
torch.save(ckpt, "lightning_sample.ckpt")
