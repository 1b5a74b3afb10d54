#!/bin/sh
# Issue 12 item 3 at full size: torchvision's resnet18, resnet50, mobilenet_v2, densenet121,
# squeezenet1_1 and vgg11_bn (which torch.onnx exports only at 224, where its adaptive pooling
# is the identity), 3 classes, random weights and batchnorm statistics, exported at 224x224 and
# imported; per model the largest softmax difference from PyTorch's, the input-gradient cosine
# and the largest gradient error. It is tests/test_onnx.c's check at another size (too slow
# for make test: vgg11_bn alone is a 0.5 GB file).
# usage: sh bench/onnx/parity224.sh   (needs python3-torch, python3-torchvision, python3-onnx)
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
make -s -C "$root" build/tests/test_onnx build/medrobust
cd "$root"
MEDROBUST_ONNX_TV="224 resnet18,resnet50,mobilenet_v2,densenet121,squeezenet1_1,vgg11_bn" \
  build/tests/test_onnx 2>&1 | grep -E "^  (resnet|mobilenet|densenet|squeezenet|vgg)|OK|FAIL"
