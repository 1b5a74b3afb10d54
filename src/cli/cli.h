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
} CliCommand;

/* Parses a positive int / a float option value; prints a usage error and
 * returns 0 on failure. */
int cli_parse_int(const char *cmd, const char *opt, const char *text, int min, int max, int *out);
int cli_parse_float(const char *cmd, const char *opt, const char *text, float min, float max,
                    float *out);

int cmd_models(int argc, char **argv);

#endif
