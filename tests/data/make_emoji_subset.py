#!/usr/bin/env python3
# tests/data/make_emoji_subset.py: copies a small fixed subset of the emoji pairs (data/emoji,
# fetched by data/fetch_emoji.sh) into tests/data/emoji_subset/, so that tests of mm-mini's
# shipped models run without the full dataset. Committed output; rerun only to change the subset.
# Picks every k-th base emoji (no skin tones) that has both art styles: 24 held-out, 12 training.
import json, os, shutil, sys

src = sys.argv[1] if len(sys.argv) > 1 else "data/emoji/pairs.jsonl"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emoji_subset")
pairs = [json.loads(l) for l in open(src)]
by_hex = {}
for p in pairs:
    if p["hexcode"] == p["base"]:
        by_hex.setdefault(p["hexcode"], []).append(p)
full = [v for v in by_hex.values() if len({p["style"] for p in v}) == 2]
chosen = []
for split, n in (("val", 24), ("train", 12)):
    cands = [v for v in full if v[0]["split"] == split]
    step = len(cands) // n
    chosen += [cands[i * step] for i in range(n)]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "pairs.jsonl"), "w") as f:
    for group in chosen:
        for p in sorted(group, key=lambda p: p["style"]):
            name = p["style"] + "_" + p["hexcode"].lower() + ".png"
            shutil.copy(os.path.join(os.path.dirname(src), p["path"]), os.path.join(out, name))
            q = dict(p)
            q["path"] = name
            f.write(json.dumps(q, ensure_ascii=False, separators=(",", ":")) + "\n")
print(len(chosen), "emoji written to", out)
