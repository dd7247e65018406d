#!/usr/bin/env bash
# weights_tools/download.sh: fetches official model files into mm's cache folder
# ($XDG_CACHE_HOME/mm, else ~/.cache/mm), where the apps look for them. Needs internet and curl
# or wget; tests never run a download (tests/apps/test_mmclip.cpp checks --list and a bad name).
#
#   bash weights_tools/download.sh --list          # the names
#   bash weights_tools/download.sh vocab           # CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz)
#   bash weights_tools/download.sh ViT-B-32        # OpenAI CLIP weights (TorchScript .pt)
#   bash weights_tools/download.sh vqgan-imagenet-f16-16384   # taming's ImageNet VQGAN + its yaml
#
# CLIP URLs are those of clip/clip.py's _MODELS table; as clip._download does, the SHA-256 in
# the URL path is checked after the download (and a file already present with the right hash is
# kept). The vocabulary is OpenAI's file from the CLIP repository (SHA-256 as in ../shared/refs).
# The VQGAN comes from the taming-transformers README's heibox link, which publishes no
# checksum: its SHA-256 is printed so it can be recorded.
set -euo pipefail

CLIP_BASE=https://openaipublic.azureedge.net/clip/models
# name | sha256 (from the URL) | file name
CLIP_MODELS="
RN50|afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762|RN50.pt
RN101|8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599|RN101.pt
RN50x4|7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd|RN50x4.pt
RN50x16|52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa|RN50x16.pt
RN50x64|be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c|RN50x64.pt
ViT-B-32|40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af|ViT-B-32.pt
ViT-B-16|5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f|ViT-B-16.pt
ViT-L-14|b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836|ViT-L-14.pt
ViT-L-14-336px|3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02|ViT-L-14-336px.pt
"
VOCAB_URL=https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz
VOCAB_SHA256=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
VQGAN_BASE="https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p="
VQGAN_CKPT_URL="${VQGAN_BASE}%2Fckpts%2Flast.ckpt&dl=1"
VQGAN_YAML_URL="${VQGAN_BASE}%2Fconfigs%2Fmodel.yaml&dl=1"

NAMES="vocab ViT-B-32 ViT-B-16 ViT-L-14 ViT-L-14-336px RN50 RN101 RN50x4 RN50x16 RN50x64 vqgan-imagenet-f16-16384"

usage() {
  echo "usage: bash weights_tools/download.sh NAME...   (or --list)"
  echo "names: $NAMES"
  echo "files go to ${XDG_CACHE_HOME:-$HOME/.cache}/mm"
}

die() {
  echo "download.sh: $*" >&2
  exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# fetch URL DEST: to DEST.part, then renamed, so an interrupted download leaves no DEST.
fetch() {
  local url=$1 dest=$2
  echo "downloading $url"
  echo "         -> $dest"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$dest.part" "$url" || die "curl failed for $url"
  elif command -v wget >/dev/null 2>&1; then
    wget -O "$dest.part" "$url" || die "wget failed for $url"
  else
    die "neither curl nor wget is installed (apt-get install curl)"
  fi
  mv "$dest.part" "$dest"
}

# fetch_checked URL DEST SHA256: keeps a present file with the right hash; verifies new ones.
fetch_checked() {
  local url=$1 dest=$2 want=$3
  if [ -f "$dest" ] && [ "$(sha256_of "$dest")" = "$want" ]; then
    echo "$dest is present and its SHA-256 matches"
    return
  fi
  fetch "$url" "$dest"
  local got
  got=$(sha256_of "$dest")
  if [ "$got" != "$want" ]; then
    mv "$dest" "$dest.bad"
    die "SHA-256 mismatch for $dest: expected $want, got $got (kept as $dest.bad)"
  fi
  echo "SHA-256 verified: $want"
}

download() {
  local name=$1 line
  case "$name" in
    vocab)
      fetch_checked "$VOCAB_URL" "$CACHE/bpe_simple_vocab_16e6.txt.gz" "$VOCAB_SHA256"
      ;;
    vqgan-imagenet-f16-16384)
      fetch "$VQGAN_YAML_URL" "$CACHE/vqgan_imagenet_f16_16384.yaml"
      fetch "$VQGAN_CKPT_URL" "$CACHE/vqgan_imagenet_f16_16384.ckpt"
      echo "no published checksum; SHA-256 of what was downloaded:"
      sha256sum "$CACHE/vqgan_imagenet_f16_16384.ckpt" "$CACHE/vqgan_imagenet_f16_16384.yaml"
      ;;
    *)
      line=$(printf '%s\n' "$CLIP_MODELS" | grep "^$name|" || true)
      [ -n "$line" ] || die "unknown name '$name' (known: $NAMES)"
      local sha file
      sha=$(echo "$line" | cut -d'|' -f2)
      file=$(echo "$line" | cut -d'|' -f3)
      fetch_checked "$CLIP_BASE/$sha/$file" "$CACHE/$file" "$sha"
      ;;
  esac
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in
  --list) for n in $NAMES; do echo "$n"; done; exit 0 ;;
  -h|--help) usage; exit 0 ;;
esac
for name in "$@"; do  # check every name before fetching anything
  case " $NAMES " in *" $name "*) ;; *) die "unknown name '$name' (known: $NAMES; see --list)" ;; esac
done
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (coreutils)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mm"
mkdir -p "$CACHE"
for name in "$@"; do download "$name"; done
echo "done: files are in $CACHE"
