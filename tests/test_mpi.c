/* MPI (issue 17): the MPI build (make MPI=1, MEDROBUST_MPI_BIN) under mpirun with 2 and 3
 * ranks writes the same certify, triage, eval, attack and compare outputs as the plain binary in
 * one process, apart from the timings; data-parallel training reaches the weights one process
 * reaches (to float rounding), the same bits on every run, and resumes bit for bit; a command
 * that does not share its work refuses to run under several ranks. Skips with the reason when
 * mpirun or the MPI build is missing. */
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char dir[256];
static const char *bin, *mpi_bin;

static int run(char *out, size_t n, const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
  FILE *p = popen(cmd, "r");
  size_t got = p ? fread(out, 1, n - 1, p) : 0;
  out[got] = 0;
  const int status = p ? pclose(p) : -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The whole file into out; its size. */
static size_t read_bytes(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  const size_t got = fread(out, 1, n, f);
  fclose(f);
  if (got == n) fail_msg("%s: larger than the test's buffer", path);
  return got;
}

/* The file without its timing lines: certify.json's "seconds" and certify.csv's last column. */
static void read_untimed(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("%s: cannot open", path);
  char line[4096];
  size_t at = 0;
  const int csv = strstr(path, "certify.csv") != NULL; /* its last column: seconds */
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "\"seconds\"")) continue;
    if (csv) {
      char *comma = strrchr(line, ',');
      if (comma) *comma = '\0';
    }
    at += (size_t)snprintf(out + at, n - at, "%s\n", line);
    if (at >= n) fail_msg("%s: larger than the test's buffer", path);
  }
  fclose(f);
}

/* The binaries by absolute path: the tests run inside the temporary folder. */
static char bin_path[4096], mpi_path[4096];

static int setup(void **state) {
  (void)state;
  const char *b = getenv("MEDROBUST_BIN"), *m = getenv("MEDROBUST_MPI_BIN");
  if (b && realpath(b, bin_path)) bin = bin_path;
  if (m && *m && realpath(m, mpi_path)) mpi_bin = mpi_path;
  if (make_temp_dir(dir, sizeof dir, "mpi") != 0) return -1;
  return chdir(dir);
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static int have_mpi(void) {
  char out[256];
  if (!bin || !mpi_bin || !*mpi_bin || access(mpi_bin, X_OK) != 0) {
    print_message("  skipped: no MPI build (make builds build-mpi/medrobust when mpicc exists)\n");
    return 0;
  }
  if (run(out, sizeof out, "mpirun --version") != 0) {
    print_message("  skipped: no mpirun (Debian's openmpi-bin)\n");
    return 0;
  }
  return 1;
}

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -np %d %s"

static void test_ranks_agree(void **state) {
  (void)state;
  if (!have_mpi()) skip();
  static char out[1 << 16], one[1 << 20], many[1 << 20];
  const char *setup_steps[3] = {
      "data phantom --out p.npz --n 200 --seed 3",
      "--threads 1 train --data p.npz --model cnn --depth 3 --epochs 1 --noise-sd 0.1 --out "
      "m.safetensors --quiet",
      "--threads 1 train --data p.npz --model cnn --depth 2 --epochs 1 --out m2.safetensors "
      "--quiet"};
  for (int i = 0; i < 3; i++)
    if (run(out, sizeof out, "%s %s", bin, setup_steps[i]) != 0)
      fail_msg("%s:\n%s", setup_steps[i], out);
  /* each command's outputs: c<10 * command + ranks> */
  const struct {
    const char *args, *says, *files[2];
  } commands[5] = {
      {"certify --model m.safetensors --data p.npz --sigma 0.1 --n0 20 --n 200 --radii 0,0.05 "
       "--pgd-steps 3 --out c%d --quiet",
       "certified (smoothed)",
       {"/certify.json", "/certify.csv"}},
      /* batches of 8 over 40 images: the ranks share them differently each run */
      {"triage --model m.safetensors --data p.npz --batch 8 --out c%d --quiet",
       "most fragile",
       {"/triage.json", "/triage.csv"}},
      /* the eps carry needs every rank to know every image's result after each eps */
      {"eval --model m.safetensors --data p.npz --attacks fgsm,pgd --eps 0.01,0.03 --batch 8 "
       "--examples 0 --out c%d --quiet",
       "self-checks",
       {"/results.json", "/images.csv"}},
      {"attack --model m.safetensors --data p.npz --attack pgd --eps 0.02 --batch 8 --out c%d.npz",
       "attacks succeeded",
       {".npz", ".npz.csv"}},
      /* two models: their sweeps and triage shared, the transfer matrix on every rank */
      {"compare --models m.safetensors,m2.safetensors --data p.npz --attacks pgd --eps 0.02 "
       "--limit 24 --batch 8 --out c%d --quiet",
       "source \\ target",
       {"/compare.json", "/compare.csv"}},
  };
  char cmd[2048], args[1024];
  for (int c = 0; c < 5; c++) {
    snprintf(args, sizeof args, commands[c].args, 10 * c + 1);
    if (run(out, sizeof out, "%s --threads 1 %s", bin, args) != 0)
      fail_msg("one process: %s\n%s", args, out);
    for (int ranks = 2; ranks <= 3; ranks++) {
      snprintf(args, sizeof args, commands[c].args, 10 * c + ranks);
      snprintf(cmd, sizeof cmd, MPIRUN " --threads 1 %s", ranks, mpi_bin, args);
      if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%d ranks: %s\n%s", ranks, args, out);
      assert_non_null(strstr(out, commands[c].says));
      for (int f = 0; f < 2; f++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "c%d%s", 10 * c + 1, commands[c].files[f]);
        snprintf(b, sizeof b, "c%d%s", 10 * c + ranks, commands[c].files[f]);
        int same;
        if (!strcmp(commands[c].files[f], ".npz")) { /* the adversarial images, bit for bit */
          const size_t size = read_bytes(a, one, sizeof one);
          same = size == read_bytes(b, many, sizeof many) && !memcmp(one, many, size);
        } else {
          read_untimed(a, one, sizeof one), read_untimed(b, many, sizeof many);
          same = !strcmp(one, many);
        }
        if (!same) fail_msg("%s differs between 1 and %d ranks", b, ranks);
      }
    }
  }
  /* a failure ends the job with its message and exit code, not a hang */
  snprintf(cmd, sizeof cmd, "timeout 120 " MPIRUN " certify --model none --data p.npz --out f", 2,
           mpi_bin);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 1);
  assert_non_null(strstr(out, "cannot open"));
  /* one process's commands refuse several ranks, on every rank, with the reason */
  snprintf(cmd, sizeof cmd, MPIRUN " data phantom --out q.npz --n 20", 2, mpi_bin);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 2);
  assert_non_null(strstr(out, "runs in one process only"));
}

/* How far apart two models are: ||a - b|| / ||a|| over the parameters, and the largest
 * difference of their probabilities (eval mode: the batchnorm running statistics) on a fixed
 * batch of random images. */
static void model_distance(const char *a_path, const char *b_path, double *params, double *probs) {
  MrError err = {0};
  Net *a = safetensors_load_net(a_path, &err), *b = safetensors_load_net(b_path, &err);
  if (!a || !b) fail_msg("%s", err.msg);
  assert_int_equal(net_param_count(a), net_param_count(b));
  const float *pa = net_params(a), *pb = net_params(b);
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < net_param_count(a); i++)
    num += ((double)pa[i] - pb[i]) * ((double)pa[i] - pb[i]), den += (double)pa[i] * pa[i];
  *params = sqrt(num / den);
  enum { B = 8 };
  const int n = net_input_size(a), k = net_num_classes(a) * net_output_pixels(a);
  float *x = malloc(sizeof(float) * n * B), *qa = malloc(sizeof(float) * k * B),
        *qb = malloc(sizeof(float) * k * B);
  Rng rng;
  rng_seed(&rng, 7);
  for (int i = 0; i < n * B; i++) x[i] = rng_uniform(&rng);
  net_predict(a, x, B, qa), net_predict(b, x, B, qb);
  *probs = 0.0;
  for (int i = 0; i < B * k; i++)
    if (fabs((double)qa[i] - qb[i]) > *probs) *probs = fabs((double)qa[i] - qb[i]);
  free(x), free(qa), free(qb), net_free(a), net_free(b);
}

static int same_bytes(const char *a, const char *b) {
  static char one[1 << 23], many[1 << 23];
  const size_t size = read_bytes(a, one, sizeof one);
  return size == read_bytes(b, many, sizeof many) && !memcmp(one, many, size);
}

/* Data-parallel training: 2 and 3 ranks (batch 23 of 140 images: the last batch of 2 leaves
 * the third rank without an image) against one process, with dropout, and adversarially. */
static void test_training_ranks(void **state) {
  (void)state;
  if (!have_mpi()) skip();
  static char out[1 << 16];
  char cmd[2048];
  if (run(out, sizeof out, "%s data phantom --out t.npz --n 200 --seed 3", bin) != 0)
    fail_msg("%s", out);
  const char *train =
      "--threads 1 train --data t.npz --model cnn --depth 2 --epochs 2 --batch 23 "
      "--optim sgd --lr 0.01 --dropout 0.2 --quiet";
  const char *adv = "--adv pgd --adv-iters 3 --eps 0.02";
  for (int a = 0; a < 2; a++) {
    if (run(out, sizeof out, "%s %s %s --out t%d1.safetensors", bin, train, a ? adv : "", a) != 0)
      fail_msg("one process: %s", out);
    for (int ranks = 2; ranks <= 3; ranks++) {
      snprintf(cmd, sizeof cmd, MPIRUN " %s %s --out t%d%d.safetensors", ranks, mpi_bin, train,
               a ? adv : "", a, ranks);
      if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%d ranks: %s\n%s", ranks, cmd, out);
      assert_non_null(strstr(out, "best epoch"));
      char one[64], many[64];
      snprintf(one, sizeof one, "t%d1.safetensors", a);
      snprintf(many, sizeof many, "t%d%d.safetensors", a, ranks);
      double params, probs;
      model_distance(one, many, &params, &probs);
      /* measured: 2e-8 to 7e-7, float sums in another order; with each rank's own batchnorm
       * statistics instead of the batch's, 5e-3 */
      if (params > 1e-5 || probs > 1e-4)
        fail_msg("%s is %g (parameters) and %g (probabilities) away from %s", many, params, probs,
                 one);
    }
  }
  /* segmentation: one step of a U-Net's composite loss (cross-entropy + Dice, median-frequency
   * weights) over 56 images split 28/28 (measured 6.5e-8) */
  if (run(out, sizeof out, "%s data phantom --task segment --size 64 --n 80 --out s.npz", bin))
    fail_msg("%s", out);
  const char *seg =
      "--threads 1 train --data s.npz --model unet --depth 2 --base 4 --epochs 1 "
      "--batch 56 --optim sgd --lr 0.05 --no-augment --quiet";
  if (run(out, sizeof out, "%s %s --out u1.safetensors", bin, seg) != 0) fail_msg("%s", out);
  snprintf(cmd, sizeof cmd, MPIRUN " %s --out u2.safetensors", 2, mpi_bin, seg);
  if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%s\n%s", cmd, out);
  double params, probs;
  model_distance("u1.safetensors", "u2.safetensors", &params, &probs);
  if (params > 1e-5 || probs > 1e-4)
    fail_msg("the U-Net of 2 ranks is %g (parameters) and %g (probabilities) away", params, probs);
  /* the same bits every run, and a run stopped after its first epoch resumes to them */
  snprintf(cmd, sizeof cmd, MPIRUN " %s --out r.safetensors --stop-after 1", 2, mpi_bin, train);
  if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%s\n%s", cmd, out);
  assert_non_null(strstr(out, "--resume continues"));
  snprintf(cmd, sizeof cmd, MPIRUN " %s --out r.safetensors --resume", 2, mpi_bin, train);
  if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%s\n%s", cmd, out);
  snprintf(cmd, sizeof cmd, MPIRUN " %s --out s.safetensors", 2, mpi_bin, train);
  if (run(out, sizeof out, "%s", cmd) != 0) fail_msg("%s\n%s", cmd, out);
  assert_true(same_bytes("t02.safetensors", "s.safetensors"));
  assert_true(same_bytes("t02.safetensors", "r.safetensors"));
  assert_true(same_bytes("s.safetensors.ckpt", "r.safetensors.ckpt"));
  /* another rank count continues another run: refused, as are crafting statistics the ranks
   * do not share */
  snprintf(cmd, sizeof cmd, MPIRUN " %s --out r.safetensors --resume", 3, mpi_bin, train);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 1);
  assert_non_null(strstr(out, "process count"));
  snprintf(cmd, sizeof cmd, MPIRUN " %s %s --adv-bn train --out b.safetensors", 2, mpi_bin, train,
           adv);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 1);
  assert_non_null(strstr(out, "--adv-bn eval"));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_ranks_agree),
                                     cmocka_unit_test(test_training_ranks)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
