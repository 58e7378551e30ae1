/* Replays the fuzz target's seed corpus (fuzz/corpus/) under `make test`,
 * so every input the fuzzer once needed -- and every crash it found, once
 * fixed -- runs on each build, under the sanitizers and valgrind too. The
 * target's own invariants abort() with a message naming the input. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../fuzz/fuzz_spec.c"

/* make runs the tests from the repository root. */
#define CORPUS_DIR "fuzz/corpus"
#define MAX_INPUTS 512
#define MAX_INPUT_BYTES (1 << 20)

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file into a fresh buffer; returns its size or -1. */
static long read_file(const char *path, unsigned char **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    unsigned char *buf = malloc(MAX_INPUT_BYTES);
    size_t n = buf ? fread(buf, 1, MAX_INPUT_BYTES, fp) : 0;
    int too_big = buf && n == MAX_INPUT_BYTES && fgetc(fp) != EOF;
    fclose(fp);
    if (!buf || too_big) {
        free(buf);
        return -1;
    }
    *out = buf;
    return (long)n;
}

static void test_corpus_replays(void **state)
{
    (void)state;
    DIR *dir = opendir(CORPUS_DIR);
    if (!dir)
        fail_msg("cannot open %s (run the tests from the repository root): "
                 "the fuzz seed corpus is missing",
                 CORPUS_DIR);
    char *names[MAX_INPUTS];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        assert_true(n < MAX_INPUTS);
        names[n] = malloc(strlen(CORPUS_DIR) + strlen(e->d_name) + 2);
        assert_non_null(names[n]);
        sprintf(names[n], "%s/%s", CORPUS_DIR, e->d_name);
        n++;
    }
    closedir(dir);
    if (n == 0)
        fail_msg("%s holds no inputs", CORPUS_DIR);
    /* A fixed order, so a failure reproduces the same way. */
    qsort(names, (size_t)n, sizeof *names, by_name);

    for (int i = 0; i < n; i++) {
        struct stat st;
        assert_int_equal(stat(names[i], &st), 0);
        if (!S_ISREG(st.st_mode)) {
            free(names[i]);
            continue;
        }
        unsigned char *data = NULL;
        long size = read_file(names[i], &data);
        if (size < 0)
            fail_msg("cannot read corpus input %s", names[i]);
        fuzz_input_name = names[i];
        assert_int_equal(LLVMFuzzerTestOneInput(data, (size_t)size), 0);
        fuzz_input_name = NULL;
        free(data);
        free(names[i]);
    }
    print_message("replayed %d fuzz corpus inputs\n", n);
}

/* The empty input and one byte of each value: the decoder reads past the
 * end as zeros, so every short input is still a whole spec. */
static void test_short_inputs(void **state)
{
    (void)state;
    assert_int_equal(LLVMFuzzerTestOneInput(NULL, 0), 0);
    for (int b = 0; b < 256; b += 17) {
        uint8_t one = (uint8_t)b;
        assert_int_equal(LLVMFuzzerTestOneInput(&one, 1), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_replays),
        cmocka_unit_test(test_short_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
