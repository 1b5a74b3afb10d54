/* Never lose work: every long command (eval, triage, compare, attack,
 * saliency, on a classifier and on a segmentation model; radiomics attack and stability) is killed
 * with SIGKILL at random points and continued with --resume until it finishes, and its outputs must
 * be byte for byte those of an uninterrupted run (the "seconds" a sweep row took aside). Also the
 * journal itself: torn and corrupt records, another run's journal, and the refusals of the CLI.
 * Runs the binary named by MEDROBUST_BIN. The kill times come from a seed
 * printed at the start (MR_RESUME_SEED=S replays a run). */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char dir[256];
static const char *bin;
static Rng rng;

/* Runs `medrobust ARGS` to completion; its exit code (output to dir/log). */
static int run(const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s %s >%s/log 2>&1", bin, args, dir);
  const int status = system(cmd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void log_text(char *out, size_t n) {
  char path[300];
  snprintf(path, sizeof path, "%s/log", dir);
  FILE *f = fopen(path, "r");
  const size_t got = f ? fread(out, 1, n - 1, f) : 0;
  out[got] = 0;
  if (f) fclose(f);
}

static void must_run(const char *args) {
  if (run(args) != 0) {
    char out[8192];
    log_text(out, sizeof out);
    fail_msg("'medrobust %s' failed:\n%s", args, out);
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Starts `medrobust ARGS` (the shell execs it, so the pid is medrobust's). */
static pid_t spawn(const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "exec %s %s >>%s/log 2>&1", bin, args, dir);
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static int setup(void **state) {
  (void)state;
  bin = getenv("MEDROBUST_BIN");
  if (!bin) bin = "build/medrobust";
  const char *given = getenv("MR_RESUME_SEED");
  const uint64_t seed = given ? strtoull(given, NULL, 10) : (uint64_t)time(NULL);
  printf("[ resume ] kill times from MR_RESUME_SEED=%llu\n", (unsigned long long)seed);
  rng_seed(&rng, seed);
  if (make_temp_dir(dir, sizeof dir, "resume") != 0) return -1;
  char args[2048];
  snprintf(args, sizeof args, "data phantom --n 400 --out %s/ph.npz", dir);
  must_run(args);
  for (int m = 0; m < 2; m++) {
    snprintf(args, sizeof args,
             "train --model cnn --depth 2 --base 8 --size 28 --data %s/ph.npz --epochs 3 --seed "
             "%d --quiet --out %s/cnn%d.safetensors",
             dir, m + 1, dir, m);
    must_run(args);
  }
  snprintf(args, sizeof args,
           "radiomics train --data %s/ph.npz --max-features 8 --quiet --out %s/radiomics.json", dir,
           dir);
  must_run(args);
  snprintf(args, sizeof args, "data phantom --task segment --n 200 --out %s/seg.npz", dir);
  must_run(args);
  for (int m = 0; m < 2; m++) {
    snprintf(args, sizeof args,
             "train --model unet --depth 2 --base 8 --data %s/seg.npz --epochs 2 --lr 0.01 "
             "--seed %d --quiet --out %s/unet%d.safetensors",
             dir, m + 1, dir, m);
    must_run(args);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

/* A CSV whose last column is "seconds" without that column. */
static void drop_seconds_column(uint8_t *b, size_t *n) {
  const size_t head = strcspn((const char *)b, "\n");
  if (head < 8 || head >= *n || memcmp(b + head - 8, ",seconds", 8) != 0) return;
  size_t w = 0, line = 0;
  for (size_t r = 0; r < *n; r++)
    if (b[r] == '\n') {
      size_t end = r;
      while (end > line && b[end - 1] != ',') end--;
      const size_t keep = end > line ? end - 1 - line : r - line;
      memmove(b + w, b + line, keep), w += keep;
      b[w++] = '\n';
      line = r + 1;
    }
  *n = w;
}

/* The bytes of a file with the value of every "seconds" key (and column)
 * removed: the time a row took is the one thing a resumed run may not
 * reproduce. */
static uint8_t *normalised(const char *path, size_t *n) {
  uint8_t *b = read_all(path, n);
  if (!b) return NULL;
  if (*n > 4 && strcmp(path + strlen(path) - 4, ".csv") == 0) drop_seconds_column(b, n);
  const char *key = "\"seconds\":";
  const size_t kl = strlen(key);
  size_t w = 0;
  for (size_t r = 0; r < *n;) {
    if (*n - r >= kl && memcmp(b + r, key, kl) == 0) {
      memmove(b + w, b + r, kl), w += kl, r += kl;
      while (r < *n && strchr(" \t0123456789.eE+-", b[r])) r++;
      continue;
    }
    b[w++] = b[r++];
  }
  *n = w;
  return b;
}

/* Every file under ref has an equal twin under got, and got has no others
 * (no journal, no temporary file). */
static void compare_trees(const char *ref, const char *got, const char *what) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cd '%s' && find . -type f | sort > '%s/ref.list'", ref, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "cd '%s' && find . -type f | sort > '%s/got.list'", got, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "cmp -s '%s/ref.list' '%s/got.list'", dir, dir);
  if (system(cmd) != 0) {
    snprintf(cmd, sizeof cmd, "diff '%s/ref.list' '%s/got.list'", dir, dir);
    const int shown = system(cmd); /* diff exits 1 when the lists differ */
    (void)shown;
    fail_msg("%s: the resumed run's files differ from the uninterrupted run's", what);
  }
  char list[300], line[1024];
  snprintf(list, sizeof list, "%s/ref.list", dir);
  FILE *f = fopen(list, "r");
  assert_non_null(f);
  int files = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/%s", ref, line);
    snprintf(b, sizeof b, "%s/%s", got, line);
    size_t na, nb;
    uint8_t *x = normalised(a, &na), *y = normalised(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    if (na != nb || memcmp(x, y, na) != 0)
      fail_msg("%s: %s differs after kill -9 and --resume", what, line);
    free(x), free(y);
    files++;
  }
  fclose(f);
  assert_true(files > 0);
}

/* text with every OUT replaced by out */
static void with_out(char *args, size_t cap, const char *text, const char *out) {
  size_t n = 0;
  for (const char *at; (at = strstr(text, "OUT")); text = at + 3)
    n += (size_t)snprintf(args + n, cap - n, "%.*s%s", (int)(at - text), text, out);
  snprintf(args + n, cap - n, "%s", text);
}

/* Whether the journal at path holds a finished unit yet. */
static int has_record(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0; /* not created yet */
  static uint8_t b[1 << 20];
  const size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  return memmem(b, n, "MRJR", 4) != NULL;
}

/* args has OUT where the output folder goes, journal (under OUT) the
 * command's journal. Runs it uninterrupted into dir/NAME-ref, then into
 * dir/NAME-cut killed (up to three times: first once a unit of work is
 * journaled, then at random points) and resumed until it succeeds; the
 * folders must match, and a resumed run must have restored finished work. */
static void kill_and_resume(const char *name, const char *args_with_out, const char *journal) {
  char ref[300], cut[300], args[2048], resumed[2100];
  snprintf(ref, sizeof ref, "%s/%s-ref", dir, name);
  snprintf(cut, sizeof cut, "%s/%s-cut", dir, name);
  mkdir(ref, 0755), mkdir(cut, 0755);
  with_out(args, sizeof args, args_with_out, ref);
  const double t0 = now();
  must_run(args);
  const double took = now() - t0;
  with_out(args, sizeof args, args_with_out, cut);
  snprintf(resumed, sizeof resumed, "%s --resume", args);
  char journal_path[400], log_path[300];
  snprintf(journal_path, sizeof journal_path, "%s/%s", cut, journal);
  snprintf(log_path, sizeof log_path, "%s/log", dir);
  unlink(log_path);
  int kills = 0, kills_with_work = 0, finished = 0;
  for (int attempt = 0; attempt < 8 && !finished; attempt++) {
    const pid_t pid = spawn(attempt ? resumed : args);
    int status;
    if (attempt < 3) {
      /* the first time once some work is journaled, then anywhere from loading the model
       * to writing the report */
      double wait = took * (0.05 + 0.9 * rng_uniform(&rng));
      if (attempt == 0) {
        for (double t = 0; t < 2 * took + 5 && !has_record(journal_path); t += 0.002) usleep(2000);
        wait = took * 0.3 * rng_uniform(&rng);
      }
      usleep((useconds_t)(1e6 * wait));
      if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        kills++;
        /* a run killed after its last unit, when the journal is already gone and only the
         * report is left to write, leaves nothing to restore: the next run starts afresh */
        kills_with_work += has_record(journal_path);
        continue;
      }
    } else {
      waitpid(pid, &status, 0);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      char out[8192];
      log_text(out, sizeof out);
      fail_msg("%s: attempt %d exited %d:\n%s", name, attempt,
               WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    }
    finished = 1;
  }
  assert_true(finished);
  char out[16384];
  log_text(out, sizeof out);
  long restored = 0;
  for (const char *at = out; (at = strstr(at, "finished units)")); at++) {
    const char *num = at - 1; /* "(N finished units)" */
    while (num > out && num[-1] >= '0' && num[-1] <= '9') num--;
    restored += strtol(num, NULL, 10);
  }
  if (kills_with_work && !restored)
    fail_msg("%s: no resumed run restored finished work:\n%s", name, out);
  assert_int_not_equal(access(journal_path, F_OK), 0); /* removed once the outputs are written */
  compare_trees(ref, cut, name);
  printf(
      "[ resume ] %s: %.1f s uninterrupted; killed %d times, %ld finished units restored, the "
      "same files\n",
      name, took, kills, restored);
}

static void test_classifier_commands(void **state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args,
           "eval --model %s/cnn0.safetensors --data %s/ph.npz --attacks fgsm,pgd,square --eps "
           "0.01,0.03 --batch 16 --examples 2 --quiet --out OUT",
           dir, dir);
  kill_and_resume("eval", args, "resume.journal");
  snprintf(args, sizeof args,
           "triage --model %s/cnn0.safetensors --data %s/ph.npz --tol 1e-3 --batch 16 --quiet "
           "--out OUT",
           dir, dir);
  kill_and_resume("triage", args, "resume.journal");
  snprintf(args, sizeof args,
           "compare --models %s/cnn0.safetensors,%s/cnn1.safetensors --data %s/ph.npz --attacks "
           "fgsm,pgd --eps 0.01,0.03 --triage-tol 1e-3 --batch 16 --quiet --out OUT",
           dir, dir, dir);
  kill_and_resume("compare", args, "resume.journal");
  snprintf(args, sizeof args,
           "attack --model %s/cnn0.safetensors --data %s/ph.npz --attack pgd --eps 0.02 --iters "
           "100 --batch 8 --png OUT/png --png-count 2 --out OUT/adv.npz",
           dir, dir);
  kill_and_resume("attack", args, "adv.npz.journal");
  snprintf(args, sizeof args,
           "saliency --model %s/cnn0.safetensors --data %s/ph.npz --count 4 --samples 20 --embed "
           "80 --quiet --out OUT",
           dir, dir);
  kill_and_resume("saliency", args, "resume.journal");
  snprintf(args, sizeof args,
           "radiomics attack --model %s/radiomics.json --data %s/ph.npz --limit 12 --eps 0.02,0.05 "
           "--queries 80 --quiet --out OUT",
           dir, dir);
  kill_and_resume("radiomics-attack", args, "resume.journal");
  snprintf(args, sizeof args,
           "radiomics stability --model %s/radiomics.json --data %s/ph.npz --limit 8 --queries 40 "
           "--quiet --out OUT/stability.csv",
           dir, dir);
  kill_and_resume("radiomics-stability", args, "stability.csv.journal");
}

static void test_segmentation_commands(void **state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args,
           "eval --model %s/unet0.safetensors --data %s/seg.npz --attacks pgd --eps 0.004,0.01 "
           "--dag-iters 20 --batch 8 --examples 1 --quiet --out OUT",
           dir, dir);
  kill_and_resume("seg-eval", args, "resume.journal");
  snprintf(args, sizeof args,
           "triage --model %s/unet0.safetensors --data %s/seg.npz --tol 1e-3 --batch 8 --quiet "
           "--out OUT",
           dir, dir);
  kill_and_resume("seg-triage", args, "resume.journal");
  snprintf(args, sizeof args,
           "compare --models %s/unet0.safetensors,%s/unet1.safetensors --data %s/seg.npz "
           "--attacks fgsm --eps 0.004 --dag-iters 10 --batch 8 --quiet --out OUT",
           dir, dir, dir);
  kill_and_resume("seg-compare", args, "resume.journal");
  snprintf(args, sizeof args,
           "attack --model %s/unet0.safetensors --data %s/seg.npz --attack dag --dag-type A "
           "--iters 30 --batch 4 --out OUT/adv.npz",
           dir, dir);
  kill_and_resume("seg-attack", args, "adv.npz.journal");
}

/* What the CLI refuses, and what it repairs. */
static void test_refusals_and_repairs(void **state) {
  (void)state;
  char args[2048], out_dir[300], journal[400], out[8192];
  snprintf(out_dir, sizeof out_dir, "%s/refuse", dir);
  snprintf(journal, sizeof journal, "%s/resume.journal", out_dir);
  const char *base =
      "triage --model %s/cnn0.safetensors --data %s/ph.npz --tol 1e-3 --batch 16 "
      "--limit 48 --quiet --out %s";
  snprintf(args, sizeof args, base, dir, dir, out_dir);
  /* a journal left by a killed run: without --resume, exit 2 naming it */
  const pid_t pid = spawn(args);
  for (int i = 0; i < 400 && access(journal, F_OK) != 0; i++) usleep(5000);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  assert_int_equal(access(journal, F_OK), 0);
  assert_int_equal(run(args), 2);
  log_text(out, sizeof out);
  assert_non_null(strstr(out, "resume.journal holds the journal of an unfinished run"));
  assert_non_null(strstr(out, "--resume"));
  /* another run's journal (other options) is refused, naming the difference */
  char other[2100];
  snprintf(other, sizeof other, "%s --resume --eps-max 0.04", args);
  assert_int_equal(run(other), 2);
  log_text(out, sizeof out);
  assert_non_null(strstr(out, "other settings or inputs"));
  assert_non_null(strstr(out, "--eps-max 0.04"));
  /* a torn last record (a write the kill cut short) is cut off and redone */
  char resumed[2100];
  snprintf(resumed, sizeof resumed, "%s --resume", args);
  struct stat st;
  assert_int_equal(stat(journal, &st), 0);
  FILE *f = fopen(journal, "ab");
  const char torn[] = "MRJR\x05\0\0\0garbage";
  fwrite(torn, 1, sizeof torn - 1, f);
  fclose(f);
  assert_int_equal(run(resumed), 0);
  assert_int_not_equal(access(journal, F_OK), 0); /* finished: removed */
  char ref[300];
  snprintf(ref, sizeof ref, "%s/refuse-ref", dir);
  snprintf(args, sizeof args, base, dir, dir, ref);
  must_run(args);
  compare_trees(ref, out_dir, "torn journal");
  /* a file that is not a journal: a clear error, exit 1 */
  f = fopen(journal, "wb");
  fputs("not a journal at all", f);
  fclose(f);
  snprintf(args, sizeof args, base, dir, dir, out_dir);
  snprintf(resumed, sizeof resumed, "%s --resume", args);
  assert_int_equal(run(resumed), 1);
  log_text(out, sizeof out);
  assert_non_null(strstr(out, "is not a medrobust journal"));
  unlink(journal);
  /* --resume with no journal starts from the beginning, saying so */
  assert_int_equal(run(resumed), 0);
  log_text(out, sizeof out);
  assert_non_null(strstr(out, "starting from the beginning"));
}

/* The journal on its own: records come back bit for bit, a corrupt byte or a
 * cut-short tail loses only the records it touches. */
static void test_journal_records(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof path, "%s/unit.journal", dir);
  unlink(path);
  MrError err = {0};
  Journal *j = journal_open(path, "run A\n", 0, &err);
  assert_non_null(j);
  float a[100], b[7];
  for (int i = 0; i < 100; i++) a[i] = (float)i / 3;
  for (int i = 0; i < 7; i++) b[i] = -(float)i;
  const JournalPart parts[2] = {{a, sizeof a}, {b, sizeof b}};
  assert_int_equal(journal_record(j, "first", parts, 2, &err), STATUS_OK);
  assert_int_equal(journal_record(j, "second", parts, 1, &err), STATUS_OK);
  assert_int_equal(journal_record(j, "third", parts + 1, 1, &err), STATUS_OK);
  journal_close(j);
  /* opening without resume refuses; with another fingerprint too */
  assert_null(journal_open(path, "run A\n", 0, &err));
  assert_non_null(strstr(err.msg, "--resume"));
  assert_null(journal_open(path, "run B\n", 1, &err));
  assert_non_null(strstr(err.msg, "'run A' then, 'run B' now"));
  j = journal_open(path, "run A\n", 1, &err);
  assert_non_null(j);
  assert_int_equal(journal_count(j), 3);
  float a2[100] = {0}, b2[7] = {0};
  const JournalPart back[2] = {{a2, sizeof a2}, {b2, sizeof b2}};
  assert_int_equal(journal_restore(j, "first", back, 2), 1);
  assert_memory_equal(a, a2, sizeof a);
  assert_memory_equal(b, b2, sizeof b);
  assert_int_equal(journal_restore(j, "second", back, 2), 0); /* another size */
  assert_int_equal(journal_restore(j, "absent", back, 1), 0);
  journal_close(j);
  /* flip a byte inside "second": it and everything after it are dropped */
  size_t n;
  uint8_t *bytes = read_all(path, &n);
  assert_non_null(bytes);
  const uint8_t *second = memmem(bytes, n, "second", 6);
  assert_non_null(second);
  const size_t flip = (size_t)(second - bytes) + 6 + 17;
  free(bytes);
  FILE *f = fopen(path, "r+b");
  fseek(f, (long)flip, SEEK_SET);
  fputc(0x55, f);
  fclose(f);
  j = journal_open(path, "run A\n", 1, &err);
  assert_non_null(j);
  assert_int_equal(journal_count(j), 1);
  assert_int_equal(journal_restore(j, "first", back, 2), 1);
  assert_int_equal(journal_restore(j, "third", back + 1, 1), 0);
  /* new records go after the last good one */
  assert_int_equal(journal_record(j, "fourth", parts + 1, 1, &err), STATUS_OK);
  journal_close(j);
  j = journal_open(path, "run A\n", 1, &err);
  assert_int_equal(journal_count(j), 2);
  assert_int_equal(journal_restore(j, "fourth", back + 1, 1), 1);
  assert_memory_equal(b, b2, sizeof b);
  assert_int_equal(journal_finish(j, &err), STATUS_OK);
  assert_int_not_equal(access(path, F_OK), 0);
  /* the format as tests/fuzz/make_corpus.sh writes it independently, with its torn twin */
  char copy[400];
  snprintf(copy, sizeof copy, "cp tests/fuzz/corpus/journal/eval.journal %s", path);
  assert_int_equal(system(copy), 0); /* a copy: opening may repair a file */
  j = journal_open(path, "medrobust eval\narguments: --eps 0.01\nthreads: 2\n", 1, &err);
  assert_non_null(j);
  assert_int_equal(journal_count(j), 3);
  float row[16];
  const JournalPart seed_part = {row, sizeof row};
  assert_int_equal(journal_restore(j, "row0.0/b0", &seed_part, 1), 1);
  assert_true(row[15] == 15.0f);
  assert_int_equal(journal_restore(j, "saliency-maps", NULL, 0), 1);
  journal_close(j);
  /* NULL: not journaled */
  assert_int_equal(journal_restore(NULL, "first", back, 1), 0);
  assert_int_equal(journal_record(NULL, "first", back, 1, &err), STATUS_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_journal_records),
      cmocka_unit_test(test_refusals_and_repairs),
      cmocka_unit_test(test_classifier_commands),
      cmocka_unit_test(test_segmentation_commands),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
