#!/usr/bin/env bash
# data/fetch_emoji.sh: fetches the open emoji data that mm-mini trains on, with npm only
# (`npm pack` from the npm registry), pinned and checked against sha512 integrities.
# Reading order: data/ prepares training data; next comes data/emoji_dataset.h (mmdata build).
#
#   data/fetch_emoji.sh                 # into data/emoji/ (ignored by git; never commit it)
#   data/fetch_emoji.sh /tmp/emoji      # elsewhere
#   build-data/mmdata build --src data/emoji --out data/emoji/pairs.jsonl
#
# What lands in DEST:
#   emoji-datasource-google/img/google/64/*.png    Noto Emoji art (Apache-2.0, Google)
#   emoji-datasource-twitter/img/twitter/64/*.png  Twemoji art (CC BY 4.0, Twitter, Inc and contributors)
#   emojibase-data/en/{data,messages}.json         English labels, tags, groups (MIT)
#   .tarballs/*.tgz                                the verified npm tarballs
# Each package also gets its LICENSE, package.json and README. The packages' LICENSE files are
# copied into data/licenses/ (committed, with ATTRIBUTION.md). Idempotent: a package whose
# tarball verifies and whose folder carries the matching .integrity stamp is skipped.
# A tarball whose sha512 differs from the pinned one stops the script (exit 1).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_DIR/data/emoji}"
LICENSE_DIR="$REPO_DIR/data/licenses"

# name version sha512-integrity (npm view NAME@VERSION dist.integrity) | paths to extract
PACKAGES=(
  "emoji-datasource-google 16.0.0 sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==|package/img/google/64 package/LICENSE package/README.md package/package.json"
  "emoji-datasource-twitter 16.0.0 sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==|package/img/twitter/64 package/LICENSE package/README.md package/package.json"
  "emojibase-data 17.0.0 sha512-Yvgb5AWoHViHV/gq1qr5ZAarcBip+B27/ZLRsUJkbgAEaLlZ/fof9g882LTpmEpyhBNEC0m2SEmItljHsTygjA==|package/en/data.json package/en/messages.json package/LICENSE package/README.md package/package.json"
)

die() { echo "fetch_emoji.sh: $*" >&2; exit 1; }
command -v npm >/dev/null || die "npm is not installed (the only tool used to fetch; try apt-get install npm)"
command -v openssl >/dev/null || die "openssl is not installed (needed to check the sha512 integrities)"

# The npm "integrity" of a file: sha512-<base64 of the binary digest>.
integrity_of() { echo "sha512-$(openssl dgst -sha512 -binary "$1" | base64 | tr -d '\n')"; }

mkdir -p "$DEST/.tarballs"
for entry in "${PACKAGES[@]}"; do
  read -r name version want <<<"${entry%%|*}"
  read -r -a paths <<<"${entry#*|}"
  tgz="$DEST/.tarballs/$name-$version.tgz"
  out="$DEST/$name"

  if [[ -f "$out/.integrity" && "$(cat "$out/.integrity")" == "$want" && -f "$tgz" ]] &&
     [[ "$(integrity_of "$tgz")" == "$want" ]]; then
    echo "$name@$version: present and verified, skipped"
  else
    if [[ ! -f "$tgz" || "$(integrity_of "$tgz")" != "$want" ]]; then
      echo "$name@$version: npm pack ..."
      rm -f "$tgz"
      (cd "$DEST/.tarballs" && npm pack "$name@$version" --silent >/dev/null) ||
        die "npm pack $name@$version failed (is the npm registry reachable?)"
      [[ -f "$tgz" ]] || die "npm pack $name@$version did not write $tgz"
    fi
    got="$(integrity_of "$tgz")"
    [[ "$got" == "$want" ]] || die "$tgz: sha512 integrity mismatch for $name@$version
  expected $want
  got      $got
  (the published tarball changed, or the download is corrupt: delete it and investigate before trusting it)"
    echo "$name@$version: verified $want"
    rm -rf "$out"
    mkdir -p "$out"
    tar -xzf "$tgz" -C "$out" --strip-components=1 "${paths[@]}" ||
      die "$tgz: extracting ${paths[*]} failed (did the package layout change?)"
    echo "$want" >"$out/.integrity"
  fi

  mkdir -p "$LICENSE_DIR"
  cp "$out/LICENSE" "$LICENSE_DIR/LICENSE-$name"
done

count() { find "$1" -name '*.png' | wc -l; }
echo "google PNGs:  $(count "$DEST/emoji-datasource-google/img/google/64")"
echo "twitter PNGs: $(count "$DEST/emoji-datasource-twitter/img/twitter/64")"
echo "emojibase:    $DEST/emojibase-data/en/data.json"
echo "licences:     $LICENSE_DIR (see ATTRIBUTION.md)"
