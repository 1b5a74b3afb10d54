/* medrobust report DIR: report.html from the JSON that eval / triage wrote. */
#include <stdio.h>

#include "cli.h"
#include "medrobust.h"

int cmd_report(int argc, char **argv) {
  const CliOption options[] = {{0}};
  const CliSpec spec = {
      "report", "report DIR",
      "Renders DIR/report.html from DIR/results.json, examples.json and triage.json\n"
      "(written by 'medrobust eval' and 'medrobust triage' into the same DIR). Nothing is\n"
      "recomputed: the report can always be rebuilt from its JSON.",
      options, NULL};
  const char *dir[1] = {NULL};
  int n = 0;
  int rc = cli_parse(&spec, argc, argv, dir, 1, &n);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (n != 1) {
    fprintf(stderr, "medrobust report: which folder? (see --help)\n");
    return EXIT_USAGE;
  }
  MrError err = {0};
  if (report_render(dir[0], &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  printf("wrote %s/report.html\n", dir[0]);
  return 0;
}
