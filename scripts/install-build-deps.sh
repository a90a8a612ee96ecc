#!/usr/bin/env bash
# Installs what building huiying needs beside Rust, when it is missing: cmake and nasm,
# with which the turbojpeg crate builds its bundled libjpeg-turbo (SIMD JPEG encoding),
# from Debian's packages.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v nasm >/dev/null || missing+=(nasm)
command -v cc >/dev/null || missing+=(gcc)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
