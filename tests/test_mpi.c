/* MPI (issue 17): the MPI build (make MPI=1, MEDROBUST_MPI_BIN) under mpirun with 2 and 3
 * ranks writes the same certify, triage and eval outputs (JSON and CSV) as the plain binary in
 * one process, apart from the timings; a command that does not share its work refuses to run
 * under several ranks. Skips with the reason when mpirun or the MPI build is missing. */
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

static int setup(void **state) {
  (void)state;
  bin = getenv("MEDROBUST_BIN"), mpi_bin = getenv("MEDROBUST_MPI_BIN");
  return make_temp_dir(dir, sizeof dir, "mpi");
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
  assert_int_equal(
      run(out, sizeof out, "%s data phantom --out %s/p.npz --n 200 --seed 3", bin, dir), 0);
  assert_int_equal(run(out, sizeof out,
                       "%s --threads 1 train --data %s/p.npz --model cnn --depth 3 --epochs 1 "
                       "--noise-sd 0.1 --out %s/m.safetensors --quiet",
                       bin, dir, dir),
                   0);
  const struct {
    const char *args, *says, *files[2];
  } commands[4] = {
      {"certify --model %s/m.safetensors --data %s/p.npz --sigma 0.1 --n0 20 --n 200 --radii "
       "0,0.05 --pgd-steps 3 --out %s/c%d --quiet",
       "certified (smoothed)",
       {"/certify.json", "/certify.csv"}},
      /* batches of 8 over 40 images: the ranks share them differently each run */
      {"triage --model %s/m.safetensors --data %s/p.npz --batch 8 --out %s/c%d --quiet",
       "most fragile",
       {"/triage.json", "/triage.csv"}},
      /* the eps carry needs every rank to know every image's result after each eps */
      {"eval --model %s/m.safetensors --data %s/p.npz --attacks fgsm,pgd --eps 0.01,0.03 "
       "--batch 8 --examples 0 --out %s/c%d --quiet",
       "self-checks",
       {"/results.json", "/images.csv"}},
      {"attack --model %s/m.safetensors --data %s/p.npz --attack pgd --eps 0.02 --batch 8 "
       "--out %s/c%d.npz",
       "attacks succeeded",
       {".npz", ".npz.csv"}},
  };
  char cmd[2048];
  for (int c = 0; c < 4; c++) {
    snprintf(cmd, sizeof cmd, "%s --threads 1 %s", bin, commands[c].args);
    if (run(out, sizeof out, cmd, dir, dir, dir, 10 * c + 1) != 0)
      fail_msg("one process:\n%s", out);
    for (int ranks = 2; ranks <= 3; ranks++) {
      snprintf(cmd, sizeof cmd, MPIRUN " --threads 1 %s", ranks, mpi_bin, commands[c].args);
      if (run(out, sizeof out, cmd, dir, dir, dir, 10 * c + ranks) != 0)
        fail_msg("%d ranks:\n%s", ranks, out);
      assert_non_null(strstr(out, commands[c].says));
      for (int f = 0; f < 2; f++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/c%d%s", dir, 10 * c + 1, commands[c].files[f]);
        snprintf(b, sizeof b, "%s/c%d%s", dir, 10 * c + ranks, commands[c].files[f]);
        int same;
        if (!strcmp(commands[c].files[f], ".npz")) { /* the adversarial images, bit for bit */
          const size_t size = read_bytes(a, one, sizeof one);
          same = size == read_bytes(b, many, sizeof many) && !memcmp(one, many, size);
        } else {
          read_untimed(a, one, sizeof one), read_untimed(b, many, sizeof many);
          same = !strcmp(one, many);
        }
        if (!same) fail_msg("%s differs between 1 and %d ranks", commands[c].files[f], ranks);
      }
    }
  }
  /* a failure ends the job with its message and exit code, not a hang */
  snprintf(cmd, sizeof cmd,
           "timeout 120 " MPIRUN " certify --model %s/none --data %s/p.npz --out %s/f", 2, mpi_bin,
           dir, dir, dir);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 1);
  assert_non_null(strstr(out, "cannot open"));
  /* one process's commands refuse several ranks, on every rank, with the reason */
  snprintf(cmd, sizeof cmd, MPIRUN " data phantom --out %s/q.npz --n 20", 2, mpi_bin, dir);
  assert_int_equal(run(out, sizeof out, "%s", cmd), 2);
  assert_non_null(strstr(out, "runs in one process only"));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_ranks_agree)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
