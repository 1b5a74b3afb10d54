/* The command-line tool: one table of subcommands (main.c), one cmd_*.c each.
 * Only this layer prints or exits. Exit codes: 0 ok, 1 runtime error, 2 usage. */
#ifndef MR_CLI_H
#define MR_CLI_H

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

typedef struct {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
  int distributed; /* shares its work between MPI ranks; the others run in one process only */
} CliCommand;

#include <stdint.h>
#include <stdio.h>

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_STRING, OPT_FLAG } CliOptionType;

typedef struct {
  const char *name; /* "--epochs" */
  CliOptionType type;
  void *target; /* int*, uint64_t*, float*, const char**, int* (flag) */
  double min, max;
  const char *metavar; /* " N" */
  const char *help;
} CliOption;

/* What a path option names, so cli_parse refuses, before any work, an output
 * that is also an input (or another output), a file output that is an
 * existing directory and a folder output that is an existing file. */
typedef enum { PATH_NONE = 0, PATH_IN, PATH_OUT_FILE, PATH_OUT_DIR } CliPathRole;
#define CLI_POSITIONAL "@" /* a CliPath naming the bare arguments */
typedef struct {
  const char *option; /* "--out", or CLI_POSITIONAL */
  CliPathRole role;
} CliPath;

typedef struct {
  const char *name;         /* "train" */
  const char *usage;        /* "train --data D --model M --out F [options]" */
  const char *summary;      /* one paragraph */
  const CliOption *options; /* ends with {0} */
  const CliPath *paths;     /* ends with {0}; NULL: the command names no paths */
} CliSpec;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_USAGE_ERROR = 2 };

/* Parses argv[1..] into the option targets; up to max_positional bare
 * arguments go to positional. Prints help (CLI_HELP) or a usage error. */
int cli_parse(const CliSpec *spec, int argc, char **argv, const char **positional,
              int max_positional, int *n_positional);
void cli_usage(FILE *f, const CliSpec *spec);
/* A number, or a fraction such as 4/255. */
int cli_parse_number(const char *text, double *out);

/* Parses a positive int / a float option value; prints a usage error and
 * returns 0 on failure. */
int cli_parse_int(const char *cmd, const char *opt, const char *text, int min, int max, int *out);
int cli_parse_float(const char *cmd, const char *opt, const char *text, float min, float max,
                    float *out);

#include "medrobust.h"

/* TrainProgressFn drawing a bar (TTY) or a line per epoch; ctx: int *quiet */
void cli_train_progress(const TrainProgress *p, void *ctx);
/* Progress of a long command, for SweepProgressFn: overall share done, the
 * step and an ETA. */
typedef struct {
  int quiet, tty, drawn;
  double start, last;
  char what[64];
} CliProgress;
void cli_progress_init(CliProgress *p, int quiet);
/* Clears the bar (TTY) before results are printed. */
void cli_progress_done(CliProgress *p);
/* SweepProgressFn: a bar with ETA (TTY), else a line per step and every 10 s; ctx: CliProgress */
void cli_sweep_progress(const char *what, int done, int total, void *ctx);

int cmd_models(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_triage(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_certify(int argc, char **argv);
int cmd_saliency(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_radiomics(int argc, char **argv);

/* What every command that reads a trained model and data accepts about the
 * data: its split and whether another task's data may be used. */
typedef struct {
  const char *split_seed, *split_file;
  int allow_mismatch;
} CliDataArgs;
#define CLI_DATA_OPTIONS(a)                                                           \
  {"--split-seed",                                                                    \
   OPT_STRING,                                                                        \
   &(a).split_seed,                                                                   \
   0,                                                                                 \
   0,                                                                                 \
   " S",                                                                              \
   "image folders: re-split with this seed (default: the split the model recorded)"}, \
      {"--split-file",                                                                \
       OPT_STRING,                                                                    \
       &(a).split_file,                                                               \
       0,                                                                             \
       0,                                                                             \
       " F.csv",                                                                      \
       "image folders: the split from a CSV with path and split columns"},            \
  {                                                                                   \
    "--allow-mismatch", OPT_FLAG, &(a).allow_mismatch, 0, 0, NULL,                    \
        "go on when the data's classes or stored shape differ from the model's"       \
  }
/* The DataCheck of the arguments; prints a usage error and returns 0 on a bad seed. */
int cli_data_check(const char *cmd, const CliDataArgs *a, DataCheck *out);
/* The model, and the data loaded for it (its recorded split, checked; see
 * data_load_for_model); prints warnings, the error, and returns 0 on failure. */
int cli_load_model_data(const char *model, const char *data_path, const CliDataArgs *a, Net **net,
                        DataSplits **data);
/* Warns about skipped files; the one place that says so. */
void cli_data_notes(const DataSplits *d);

/* --resume (resume.c): a long command keeps the journal of its finished
 * work in DIR/resume.journal (folder outputs) or F.journal (file outputs)
 * until its outputs are written. */
#define CLI_JOURNAL_NAME "resume.journal"
#define CLI_RESUME_OPTION(flag)                       \
  {                                                   \
    "--resume", OPT_FLAG, &(flag), 0, 0, NULL,        \
        "continue a killed run from its journal "     \
        "(same command; outputs as if never stopped)" \
  }
void cli_journal_path(const char *out, int out_is_dir, char *path, size_t cap);
/* The same, with ".rankR-of-N" appended under several MPI ranks: each journals its own work. */
void cli_journal_rank_path(const char *out, int out_is_dir, char *path, size_t cap);
/* A rank other than 0 after its share of a distributed command: on success, waits until
 * rank 0 (which calls dist_barrier after writing) has the outputs, then drops its journal;
 * an exit code. */
int cli_rank_done(const char *cmd, Status st, const MrError *err, Journal *journal);
/* Before any work: 0, or EXIT_USAGE after naming a journal found without --resume. */
int cli_journal_check(const char *cmd, const char *path, int resume);
/* The run's journal: its fingerprint is the command line (but --resume and
 * --quiet), the thread count, the models' and the data's contents, and
 * `extra` (lines of other inputs' contents; may be NULL); NULL after a
 * message, with the exit code set (2: another run's journal). */
Journal *cli_journal_open(const char *cmd, const char *path, int resume, int argc, char **argv,
                          Net *const *nets, int n_nets, const Dataset *set, const char *extra,
                          int *exit_code);
/* The outputs are written: removes the journal; an exit code. */
int cli_journal_finish(const char *cmd, Journal *j);

/* The split index of a --split value, or -1 after a usage message. */
int cli_split(const char *cmd, const char *text);
/* The sweep as a console table: clean metrics, the majority baseline, then a
 * row per attack and eps with balanced accuracy, AUC and (binary) detections. */
void cli_print_sweep(const SweepResult *r, const Dataset *d, const char *model, const char *data,
                     const char *split);
/* mkdir unless it exists; prints the error and returns 0 on failure. */
int cli_make_dir(const char *dir);

/* eval on a segmentation model: the segmentation sweep (DAG types from
 * dag_text), its table, seg_results.* and the report; an exit code. */
/* "A,C" -> the DagTarget bit mask of SegSweepOptions.dag, "none" -> 0; -1
 * after a usage message. */
int cli_parse_dag_types(const char *text);
int cli_eval_segment(Net *net, const Dataset *set, SegSweepOptions *so, const char *out,
                     const char *model, const char *data, const char *split, int quiet,
                     int n_examples);

/* compare on segmentation models: each model's sweep (paper 002 Table 1)
 * and, with transfer, the DAG transfer matrices per target type (Table 2),
 * printed and written to DIR/seg_compare.{json,csv}; an exit code. */
int cli_compare_segment(Net *const *nets, const char *const *names, int n, const Dataset *set,
                        const SegSweepOptions *so, int transfer, const char *out, const char *data,
                        int quiet);

/* attack on a segmentation model: o toward DAG type dag_type (or NULL), or
 * the masks of the .npz target_masks (or NULL); OUT.npz with the adversarial
 * images, true masks and both predictions, OUT.csv per image; an exit code. */
int cli_attack_segment(Net *net, const Dataset *set, AttackOptions *o, const char *dag_type,
                       const char *target_masks, const char *out, const char *png_dir,
                       int png_count, int batch, Journal *journal);

#define MAX_LIST 32
/* "linf" | "l2"; prints a usage error and returns 0 otherwise */
int cli_parse_norm(const char *cmd, const char *text, Norm *out);
/* "fgsm,pgd" -> attacks (up to MAX_LIST); prints the error and returns 0 on failure */
int cli_parse_attacks(const char *text, AttackKind *out, int *n);
/* "0.001,4/255" -> floats; "none" | "least-likely" | class index -> target */
/* An eps for a norm: in [0, 1] for L-inf, [0, 1e4] for L2; else prints why and returns 0. */
int cli_eps_valid(const char *cmd, double v, Norm norm, const char *text);
/* A comma-separated eps list (4/255 notation accepted), each checked by cli_eps_valid. */
/* --eps E,F,...: numbers on [0,1] pixels, 4/255, P% of the range, or N HU (modality units,
 * through window: NULL or width 0 makes them an error naming why). */
int cli_parse_eps_list(const char *cmd, const char *text, Norm norm, const IntensityWindow *window,
                       float *out, int *n);
/* whether an --eps text holds modality units (parse it once the data's window is known) */
int cli_eps_physical(const char *text);
/* How DICOM/NIfTI volumes become slices (train, data info): --window, --slices, --spacing. */
typedef struct {
  const char *window, *slices;
  float spacing;
} CliVolumeArgs;
#define CLI_VOLUME_OPTIONS(a)                                                                  \
  {"--window",                                                                                 \
   OPT_STRING,                                                                                 \
   &(a).window,                                                                                \
   0,                                                                                          \
   0,                                                                                          \
   " C,W|PRESET",                                                                              \
   "DICOM/NIfTI: the intensity window to [0,1] (lung, mediastinum, bone, brain, abdomen, or "  \
   "center,width in modality units); recorded in the model"},                                  \
      {"--slices",                                                                             \
       OPT_STRING,                                                                             \
       &(a).slices,                                                                            \
       0,                                                                                      \
       0,                                                                                      \
       " all|mask",                                                                            \
       "DICOM/NIfTI: every axial slice, or those a mask touches (a manifest's mask column, a " \
       "segmentation folder); recorded"},                                                      \
  {                                                                                            \
    "--spacing", OPT_FLOAT, &(a).spacing, 0, 1000, " MM",                                      \
        "DICOM/NIfTI: resample each slice in-plane to MM per pixel before the fit (0: as "     \
        "stored); recorded"                                                                    \
  }
/* Into opt; prints a usage error and returns 0 on a bad value. */
int cli_volume_options(const char *cmd, const CliVolumeArgs *a, DataOptions *opt);
/* One such value for `option` (--eps, --eps-max, --tol): a list is an error. */
int cli_parse_eps_value(const char *cmd, const char *option, const char *text, Norm norm,
                        const IntensityWindow *window, float *out);
int cli_parse_target(const char *text, AttackOptions *o);

#endif
