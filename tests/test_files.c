/* Outputs are written whole or not at all (src/core/atomicfile.c): a write
 * that fails part-way is an error saying why, leaves no temporary file, and
 * keeps the previous output byte for byte; a temporary file a killed run
 * left behind is removed by the next write of the same target. The failures:
 * a file-size limit (EFBIG: needs no root and no mount), a full and a
 * read-only tmpfs in a private mount namespace (ENOSPC, EROFS; a journaled
 * eval the full disk stopped resumes once space is freed), and a folder the
 * user may not write to (EACCES, run as nobody). Each skips with its reason
 * where the machine cannot provide it. */
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/data.h"
#include "testutil.h"

static char dir[64];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "files");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

/* Files in dir whose name holds ".tmp." */
static int temp_files(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static Net *small_net(void) {
  ModelSpec spec = model_spec_default("resnet8", 1, 28, 28, 2);
  Net *net = model_build(&spec, 1, NULL);
  model_spec_free(&spec);
  return net;
}

static Status write_model(const char *path, MrError *err) {
  Net *net = small_net();
  const Status s = safetensors_save_net(net, path, err);
  net_free(net);
  return s;
}

/* `medrobust ARGS` (@ is dir) with files limited to 4 KiB and SIGXFSZ ignored, so a write
 * fails with EFBIG as on a full disk (a child process: no root, no mount). Returns the exit
 * code; its output goes to dir/limited.txt. */
static int run_limited(const char *args) {
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char expanded[1024], cmd[2048];
  size_t n = 0;
  for (const char *c = args; *c && n < sizeof expanded - 80; c++)
    n += *c == '@' ? (size_t)snprintf(expanded + n, sizeof expanded - n, "%s", dir)
                   : (expanded[n] = *c, 1);
  expanded[n] = 0;
  snprintf(cmd, sizeof cmd, "sh -c \"trap '' XFSZ; ulimit -f 8; exec %s %s\" > %s/limited.txt 2>&1",
           bin, expanded, dir);
  const int status = system(cmd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* target (in dir) holds a good output; writing it again under the limit must exit 1 naming
 * it, leave no temporary file and keep the good output byte for byte. */
static void check_failed_write(const char *target, const char *args) {
  char path[128], out[4096] = "";
  snprintf(path, sizeof path, "%s/%s", dir, target);
  size_t before_len = 0, after_len = 0;
  uint8_t *before = read_all(path, &before_len);
  const int rc = run_limited(args);
  snprintf(out, sizeof out, "%s/limited.txt", dir);
  char *msg = read_text(out);
  if (rc != 1 || !strstr(msg, target) || !strstr(msg, "write"))
    fail_msg("%s: exit %d, '%s'", target, rc, msg);
  uint8_t *after = read_all(path, &after_len);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  assert_int_equal(temp_files(), 0);
  char *why = strstr(msg, "write"), *nl = strchr(why, '\n');
  if (nl) *nl = 0;
  print_message("  %-18s a write cut at 4 KiB: exit 1, \"%s\"\n", target, why);
  free(before), free(after), free(msg);
}

static void test_failed_writes_keep_the_old_file(void **state) {
  (void)state;
  char path[128];
  MrError err = {0};
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  assert_int_equal(write_model(path, &err), STATUS_OK);
  Net *net = small_net();
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  assert_int_equal(onnx_export(net, path, &err), STATUS_OK);
  net_free(net);
  DataSplits *d = phantom_generate(28, 200, 1, &err);
  snprintf(path, sizeof path, "%s/data.npz", dir);
  assert_int_equal(data_save_npz(d, path, &err), STATUS_OK);
  data_free(d);
  check_failed_write("model.safetensors", "import @/model.onnx --out @/model.safetensors");
  check_failed_write("model.onnx", "export --model @/model.safetensors --out @/model.onnx");
  check_failed_write("data.npz", "data phantom --n 300 --seed 2 --out @/data.npz");
}

/* A temporary file whose process is gone (a kill -9 mid-write) is removed by the next write,
 * and so is libzip's own temporary beside it (path.tmp.PID.XXXXXX); one of a live process is
 * not. */
static void test_stale_temporary_files_are_removed(void **state) {
  (void)state;
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  char stale[160], live[160], path[128], zip_stale[200];
  snprintf(path, sizeof path, "%s/again.safetensors", dir);
  snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)gone);
  snprintf(zip_stale, sizeof zip_stale, "%s.tmp.%ld.ybazzn", path, (long)gone);
  snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());
  FILE *f = fopen(stale, "w");
  fputs("half a model", f);
  fclose(f);
  f = fopen(zip_stale, "w");
  fputs("half an archive", f);
  fclose(f);
  f = fopen(live, "w");
  fputs("another run's model", f);
  fclose(f);
  MrError err = {0};
  assert_int_equal(write_model(path, &err), STATUS_OK);
  assert_int_equal(access(stale, F_OK), -1);
  assert_int_equal(access(zip_stale, F_OK), -1);
  assert_int_equal(access(live, F_OK), 0);
  remove(live);
}

/* Runs sh script inside a private mount namespace (unshare: a tmpfs we may fill and make
 * read-only without touching the machine), output to dir/disk.txt; 0 when namespaces or
 * tmpfs are unavailable, after saying why. */
static int run_in_namespace(const char *script) {
  char path[128], cmd[512];
  snprintf(path, sizeof path, "%s/disk.sh", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "unshare -r -m sh %s > %s/disk.txt 2>&1", path, dir);
  const int status = system(cmd);
  char out[128];
  snprintf(out, sizeof out, "%s/disk.txt", dir);
  char *text = read_text(out);
  const int ran = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !strstr(text, "SKIP");
  if (!ran) print_message("  skipped: no private tmpfs here (unshare/mount: %.200s)\n", text);
  free(text);
  return ran;
}

static char *disk_log(void) {
  char out[128];
  snprintf(out, sizeof out, "%s/disk.txt", dir);
  char *text = read_text(out);
  return text;
}

static void expect_line(const char *log, const char *line) {
  if (!strstr(log, line)) fail_msg("expected '%s' in:\n%s", line, log);
}

/* A real full disk (ENOSPC) and a read-only one (EROFS), on a 1 MiB tmpfs: the write is an
 * error naming the file and the cause, no temporary file stays, the previous output is
 * intact; and a journaled eval stopped by the full disk resumes, once space is freed, to the
 * outputs of a run that never stopped. */
static void test_full_and_read_only_disks(void **state) {
  (void)state;
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char script[4096];
  snprintf(script, sizeof script,
           "set -u\n"
           "bin=%s; top=%s; d=$top/mnt\n"
           "mkdir -p $d\n"
           "mount -t tmpfs -o size=1m tmpfs $d || { echo SKIP; exit 0; }\n"
           "$bin export --model $top/model.safetensors --out $d/m.onnx > /dev/null\n"
           "cp $d/m.onnx $top/m-good.onnx\n"
           "dd if=/dev/zero of=$d/fill bs=4k 2> /dev/null\n"
           "$bin export --model $top/model.safetensors --out $d/m.onnx; echo \"enospc exit $?\"\n"
           "cmp -s $d/m.onnx $top/m-good.onnx && echo 'enospc kept'\n"
           "echo \"enospc temps $(ls $d | grep -c '[.]tmp[.]')\"\n"
           /* the journal: leave 4 KiB, less than eval's records need */
           "rm $d/fill; free=$(( $(stat -f -c '%%a' $d) - 1 ))\n"
           "dd if=/dev/zero of=$d/fill bs=4k count=$free 2> /dev/null\n"
           "ev=\"eval --model $top/model.safetensors --data $top/data.npz --batch 4 --quiet "
           "--attacks fgsm,pgd --eps 0.01,0.02 --no-checks --examples 0 --allow-mismatch\"\n"
           "$bin $ev --out $d/ev > /dev/null; echo \"journal exit $?\"\n"
           "rm $d/fill\n"
           "$bin $ev --out $d/ev --resume > /dev/null; echo \"resumed exit $?\"\n"
           "$bin $ev --out $top/ev-ref > /dev/null\n"
           "cmp -s $d/ev/results.csv $top/ev-ref/results.csv && cmp -s $d/ev/images.csv "
           "$top/ev-ref/images.csv && echo 'resumed same'\n"
           "mount -o remount,ro $d\n"
           "$bin export --model $top/model.safetensors --out $d/m.onnx; echo \"erofs exit $?\"\n"
           "cmp -s $d/m.onnx $top/m-good.onnx && echo 'erofs kept'\n",
           bin, dir);
  if (!run_in_namespace(script)) return;
  char *log = disk_log();
  expect_line(log, "m.onnx: write failed: No space left on device (the previous file is kept)");
  expect_line(log, "enospc exit 1");
  expect_line(log, "enospc kept");
  expect_line(log, "enospc temps 0");
  expect_line(log, "resume.journal: cannot write the journal: No space left on device");
  expect_line(log, "journal exit 1");
  expect_line(log, "resuming from");
  expect_line(log, "resumed exit 0");
  expect_line(log, "resumed same");
  expect_line(log, "m.onnx: cannot write: Read-only file system");
  expect_line(log, "erofs exit 1");
  expect_line(log, "erofs kept");
  print_message(
      "  full disk: exit 1 naming the file, old output kept, no temporary file; eval "
      "stopped by it resumes to the same results; read-only: exit 1, output kept\n");
  free(log);
}

/* A folder the user may not write to (EACCES): run as nobody, which needs root to switch to. */
static void test_permission_denied(void **state) {
  (void)state;
  if (getuid() != 0 || system("command -v setpriv > /dev/null") != 0) {
    print_message("  skipped: needs root and setpriv to run as another user\n");
    return;
  }
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "chmod 755 %s && setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'test -x %s "
           "&& test -r %s/model.safetensors' 2> /dev/null",
           dir, bin, dir);
  if (system(cmd) != 0) {
    print_message("  skipped: user nobody cannot reach %s (a private folder on its path)\n", bin);
    return;
  }
  snprintf(cmd, sizeof cmd,
           "mkdir -p %s/locked && cp %s/model.onnx %s/locked/m.onnx && "
           "setpriv --reuid=65534 --regid=65534 --clear-groups %s export --model "
           "%s/model.safetensors --out %s/locked/m.onnx > %s/denied.txt 2>&1; echo $? >> "
           "%s/denied.txt",
           dir, dir, dir, bin, dir, dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  char path[128];
  snprintf(path, sizeof path, "%s/denied.txt", dir);
  char *log = read_text(path);
  expect_line(log, "m.onnx: cannot write");
  expect_line(log, "Permission denied");
  expect_line(log, "\n1\n");
  size_t a, b;
  snprintf(path, sizeof path, "%s/locked/m.onnx", dir);
  uint8_t *kept = read_all(path, &a);
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  uint8_t *good = read_all(path, &b);
  assert_int_equal(a, b);
  assert_memory_equal(kept, good, a);
  free(kept), free(good), free(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_failed_writes_keep_the_old_file),
                                     cmocka_unit_test(test_stale_temporary_files_are_removed),
                                     cmocka_unit_test(test_full_and_read_only_disks),
                                     cmocka_unit_test(test_permission_denied)};
  return cmocka_run_group_tests_name("atomic outputs", tests, setup, teardown);
}
