# medrobust build. `make` -> build/medrobust + build/libmedrobust.a
# `make test` runs the suite, `make test-quick` its fast tier, `make asan` runs it under ASan+UBSan,
# `make format-check` checks clang-format, `make fuzz` runs the readers' fuzz targets,
# `make bench` runs bench/.
CC ?= cc
# `make DIRECT=0`: without the hand-written AVX-512 convolutions (src/layers/conv2d_direct.c),
# oneDNN runs them all.
DIRECT_FLAGS := $(if $(filter 0,$(DIRECT)),-DMR_NO_DIRECT)
# `make MPI=1`: the same program built with Open MPI's compilers into build-mpi/, to run
# alone or under mpirun (src/core/dist.c); plain `make` links no MPI.
ifeq ($(MPI),1)
CC := mpicc
CXX := mpicxx
BUILD ?= build-mpi
EXTRA_CFLAGS += -DMR_MPI
endif
PKGS := openblas cmocka libcjson libzip libpng zlib libprotobuf-c
ARCH_FLAGS ?= -march=native
OPT ?= -O3
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -Iinclude -I/usr/include/nifti \
               $(shell pkg-config --cflags $(PKGS))
# GDCM (C++, no pkg-config file): DICOM, in the one C++ file src/data/dicom.cpp
GDCM_CFLAGS := -isystem /usr/include/gdcm-3.0
GDCM_LIBS := -lgdcmMSFF -lgdcmDSED -lgdcmCommon -lgdcmDICT -lgdcmIOD -lstdc++
LDLIBS := $(shell pkg-config --libs openblas libcjson libzip libpng zlib libprotobuf-c) -ljpeg -lcsv -ldnnl -lnifti2 -lqhull_r -llinear $(GDCM_LIBS) -lm -fopenmp
TEST_LDLIBS := $(shell pkg-config --libs cmocka)

BUILD ?= build
CFLAGS := $(CFLAGS_BASE) $(OPT) $(ARCH_FLAGS) -g $(DIRECT_FLAGS) $(EXTRA_CFLAGS)

LIB_SRC := $(wildcard src/core/*.c src/layers/*.c src/nn/*.c src/ops/*.c src/models/*.c src/data/*.c src/train/*.c src/eval/*.c src/attacks/*.c src/report/*.c src/onnx/*.c src/radiomics/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
# ONNX's protobuf schema, compiled by protoc-c from the copy Debian's libonnx-dev ships
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
GEN := $(BUILD)/gen
LIB_CXX_SRC := $(wildcard src/data/*.cpp src/eval/*.cpp)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_CXX_SRC:%.cpp=$(BUILD)/%.o) $(GEN)/onnx.pb-c.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HEADERS := $(wildcard include/*.h src/*/*.h tests/*.h)

all: $(BUILD)/medrobust $(BUILD)/libmedrobust.a

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -c $< -o $@

# The hand-written convolutions' sums are multiply-adds (ISO C mode contracts none), and they
# are optimised in make asan too: at its -O1 their sums live in ASan-checked stack memory
# instead of registers, and test_models took 435 s instead of 45. (make fuzz builds them not at
# all, DIRECT=0: its targets never convolve, and clang with its sanitizers spent over 7 minutes
# on the kernels' instantiations.)
KERNEL_OPT ?= -O3
$(BUILD)/src/layers/conv2d_few.o $(BUILD)/src/layers/conv2d_direct.o \
  $(BUILD)/src/layers/conv2d_narrow.o $(BUILD)/src/layers/conv2d_depthwise.o \
  $(BUILD)/src/layers/conv2d_separable.o: CFLAGS += -ffp-contract=fast $(KERNEL_OPT)

# C++ (GDCM's side): the C flags but the C++ standard, and the warnings as errors all the same
CXX ?= c++
# (UBSan's vptr check needs the C++ runtime at link time, which the C driver leaves out;
# the dynamic types it checks are GDCM's. clang's function check needs it too: the fuzz
# build sets CXX_NO_SANITIZE, which gcc does not know.)
CXX_NO_SANITIZE ?=
CXXFLAGS := $(filter-out -std=c11,$(CFLAGS)) -std=c++17 -fno-sanitize=vptr $(CXX_NO_SANITIZE) \
  $(GDCM_CFLAGS)
$(BUILD)/%.o: %.cpp $(HEADERS)
	@mkdir -p $(dir $@)
	@$(CXX) $(CXXFLAGS) -c $< -o $@

$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(GEN)
	@protoc-c --proto_path=$(dir $(ONNX_PROTO)) --c_out=$(GEN) $(ONNX_PROTO)

# generated code: its own warnings are not ours to fix
$(GEN)/onnx.pb-c.o: $(GEN)/onnx.pb-c.c
	@$(CC) $(filter-out -Werror -Wextra,$(CFLAGS)) -I$(GEN) -c $< -o $@

$(BUILD)/src/onnx/%.o: src/onnx/%.c $(HEADERS) $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -I$(GEN) -c $< -o $@

$(BUILD)/libmedrobust.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/medrobust: $(CLI_OBJ) $(BUILD)/libmedrobust.a
	$(CC) $(CFLAGS) $(CLI_OBJ) $(BUILD)/libmedrobust.a $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libmedrobust.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $< $(BUILD)/libmedrobust.a $(LDLIBS) $(TEST_LDLIBS) -o $@

tests: $(TEST_BIN) $(BUILD)/medrobust

$(BUILD)/bench_engine: bench/bench_engine.c $(BUILD)/libmedrobust.a $(HEADERS)
	$(CC) $(CFLAGS) $< $(BUILD)/libmedrobust.a $(LDLIBS) -o $@

# The MPI build beside the plain one, for tests/test_mpi.c (which skips without it): only in
# the default build, where Open MPI's mpicc is installed.
MPI_BIN := $(if $(filter build,$(BUILD)),$(if $(shell command -v mpicc 2>/dev/null),build-mpi/medrobust))
mpi:
	@$(MAKE) --no-print-directory MPI=1 BUILD=build-mpi build-mpi/medrobust

# Each test binary fails through its exit code; the runner prints one summary line.
test: tests $(if $(MPI_BIN),mpi)
	@MEDROBUST_BIN=$(BUILD)/medrobust MEDROBUST_MPI_BIN=$(MPI_BIN) sh tests/run.sh $(TEST_BIN)

# The quick tier (< 1 min): ops, graphs, model files, data readers (and every fuzz input
# replayed), atomic outputs, the public API.
QUICK_TESTS := $(addprefix $(BUILD)/tests/,test_layers test_graph test_safetensors test_data \
  test_fuzz_replay test_files test_radiomics test_radiomics_surrogate test_dicom test_public_api)
test-quick: $(QUICK_TESTS) $(BUILD)/medrobust
	@MEDROBUST_BIN=$(BUILD)/medrobust sh tests/run.sh $(QUICK_TESTS)

asan:
	$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDLIBS="$(LDLIBS) -fsanitize=address,undefined" test

# make fuzz: every reader's libFuzzer target (tests/fuzz/, clang, ASan + UBSan) for
# FUZZ_SECONDS each, from its seed corpus (tests/fuzz/corpus/NAME); new inputs stay in
# build-fuzz/corpus. `make fuzz-build` only builds them.
FUZZ_SECONDS ?= 30
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build-fuzz/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang CXX=clang++ OPT=-O1 DIRECT=0 \
	  CXX_NO_SANITIZE=-fno-sanitize=function \
	  EXTRA_CFLAGS="$(FUZZ_SANITIZE) -fsanitize=fuzzer-no-link -Wno-pass-failed" $(FUZZ_BIN)
fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

build-fuzz/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(BUILD)/libmedrobust.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -fsanitize=fuzzer $< $(BUILD)/libmedrobust.a $(LDLIBS) -fsanitize=fuzzer \
	  $(FUZZ_SANITIZE) -o $@

bench: all
	sh bench/run.sh

FORMAT_FILES := $(shell find include src tests bench -name '*.[ch]' -o -name '*.cpp')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-asan

.PHONY: all tests test test-quick asan bench format format-check clean mpi

# the replay test compiles the fuzz targets in
$(BUILD)/tests/test_fuzz_replay: $(wildcard tests/fuzz/*.c tests/fuzz/*.h)
