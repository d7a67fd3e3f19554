/* How long plg_proc takes to stop children that outlive their deadline: the figures the unit tests
 * used to assert (test_proc checks only that the children are stopped and reaped; times belong
 * here). Prints a markdown table: the deadline, what it took, and the bound by design (the
 * deadline, plus the grace between SIGTERM and SIGKILL where the child ignores SIGTERM).
 * Usage: build/bench/bench_proc_deadlines [RUNS]   (median of RUNS, default 5) */
#include "plg_proc.h"
#include "plg_util.h"

#include <stdio.h>
#include <stdlib.h>

#define GRACE_MS 500 /* plg_proc's TERM-to-KILL grace */

static int cmp(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int64_t median_run(const char *const argv[], int deadline_ms, int runs)
{
  int64_t t[32];
  for (int i = 0; i < runs; i++) {
    plg_error_t err = NULL;
    int status;
    char *out = NULL;
    int64_t start = plg_now_ms();
    plg_proc_run(argv, deadline_ms, &out, &status, &err);
    t[i] = plg_now_ms() - start;
    free(out);
    plg_error_release(&err);
  }
  qsort(t, (size_t)runs, sizeof t[0], cmp);
  return t[runs / 2];
}

int main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  if (runs < 1 || runs > 32)
    runs = 5;
  struct {
    const char *what;
    const char *const *argv;
    int deadline, bound;
  } cases[] = {
      {"a child writing endlessly (`yes`)", (const char *const[]){"yes", NULL}, 300, 300},
      {"a child sleeping 30 s", (const char *const[]){"sleep", "30", NULL}, 200, 200},
      {"a child that ignores SIGTERM", (const char *const[]){"sh", "-c", "trap '' TERM; sleep 30", NULL}, 200,
       200 + GRACE_MS},
  };
  printf("| figure | deadline | took (median of %d) | bound by design | ratio |\n|---|---|---|---|---|\n",
         runs);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t took = median_run(cases[i].argv, cases[i].deadline, runs);
    printf("| %s | %d ms | %lld ms | %d ms | %.2f |\n", cases[i].what, cases[i].deadline, (long long)took,
           cases[i].bound, (double)took / cases[i].bound);
  }
  return 0;
}
