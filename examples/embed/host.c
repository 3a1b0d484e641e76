/* A C host of loopvm: loads a .lb file, calls its `main` on two threads at
 * once with different inputs, prints the results, then walks the error
 * paths (bad source, bad arguments, an unknown function, API misuse) and
 * frees everything: run it under valgrind or AddressSanitizer.
 *
 *   cc host.c -I capi/include -L target/debug -lloopvm_capi -lpthread \
 *      -Wl,-rpath,target/debug -o host
 *   ./host examples/embed/decay.lb
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopvm.h"

/* Prints the error of a failed call and frees it. */
static void report(const char *what, loopvm_status st, loopvm_error *err) {
    printf("%s: %s: %s\n", what, loopvm_status_name(st), loopvm_error_message(err));
    loopvm_error_free(err);
}

/* One thread's job: its inputs, and what it got back. */
struct job {
    const loopvm_program *prog;
    float xs[6];  /* f32[2, 3] */
    float decay;  /* f32 scalar */
    loopvm_status status;
    char text[256];
    float last[3];
};

static void *run_job(void *arg) {
    struct job *j = arg;
    loopvm_error *err = NULL;
    loopvm_tensor *xs = NULL, *decay = NULL;
    loopvm_result *res = NULL;
    size_t shape[2] = {2, 3};

    j->status = loopvm_tensor_new(LOOPVM_F32, 2, shape, j->xs, sizeof j->xs, &xs, &err);
    if (j->status == LOOPVM_OK)
        j->status = loopvm_tensor_new(LOOPVM_F32, 0, NULL, &j->decay, sizeof j->decay, &decay, &err);
    if (j->status == LOOPVM_OK) {
        const loopvm_tensor *args[2] = {xs, decay};
        loopvm_call_options opts = loopvm_call_options_default();
        opts.tier = LOOPVM_TIER_INTERP;
        opts.max_steps = 1000000;
        j->status = loopvm_call(j->prog, "main", args, 2, &opts, &res, &err);
    }
    if (j->status == LOOPVM_OK) {
        /* main returns (f32[3], f32[T, 3]): two tensors, depth-first. */
        snprintf(j->text, sizeof j->text, "%s", loopvm_result_to_string(res));
        const loopvm_tensor *last = loopvm_result_get(res, 0);
        j->status = loopvm_tensor_copy_data(last, j->last, sizeof j->last, &err);
    }
    if (j->status != LOOPVM_OK) {
        snprintf(j->text, sizeof j->text, "%s", loopvm_error_message(err));
        loopvm_error_free(err);
    }
    loopvm_result_free(res);
    loopvm_tensor_free(xs);
    loopvm_tensor_free(decay);
    return NULL;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The error paths: each must fail cleanly with the right code. Returns the
 * number of surprises. */
static int error_paths(const loopvm_program *prog) {
    int bad = 0;
    loopvm_error *err = NULL;
    loopvm_status st;

    /* 1. Source that does not type-check. */
    loopvm_program *broken = NULL;
    st = loopvm_program_compile("fn main() -> f32 { 1 + true }", "broken.lb", &broken, &err);
    bad += st != LOOPVM_ERR_COMPILE || broken != NULL;
    report("bad source", st, err);
    err = NULL;

    /* 2. A file that does not exist. */
    st = loopvm_program_load("/nonexistent/prog.lb", &broken, &err);
    bad += st != LOOPVM_ERR_IO;
    report("missing file", st, err);
    err = NULL;

    /* 3. Malformed bytecode. */
    const uint8_t junk[] = {'L', 'B', 'C', 0, 1, 0, 0xff, 0xff};
    st = loopvm_program_from_bytecode(junk, sizeof junk, &broken, &err);
    bad += st != LOOPVM_ERR_BYTECODE;
    report("bad bytecode", st, err);
    err = NULL;

    /* 4. An unknown function. */
    loopvm_result *res = NULL;
    st = loopvm_call(prog, "nope", NULL, 0, NULL, &res, &err);
    bad += st != LOOPVM_ERR_ARGUMENT || res != NULL;
    report("unknown function", st, err);
    err = NULL;

    /* 5. Bad arguments: the wrong count, then the wrong dtype. */
    st = loopvm_call(prog, "main", NULL, 0, NULL, &res, &err);
    bad += st != LOOPVM_ERR_ARGUMENT;
    report("no arguments", st, err);
    err = NULL;
    int32_t ints[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[2] = {2, 3};
    float half = 0.5f;
    loopvm_tensor *xs = NULL, *decay = NULL;
    loopvm_tensor_new(LOOPVM_I32, 2, shape, ints, sizeof ints, &xs, NULL);
    loopvm_tensor_new(LOOPVM_F32, 0, NULL, &half, sizeof half, &decay, NULL);
    const loopvm_tensor *args[2] = {xs, decay};
    st = loopvm_call(prog, "main", args, 2, NULL, &res, &err);
    bad += st != LOOPVM_ERR_ARGUMENT;
    report("wrong dtype", st, err);
    err = NULL;

    /* 6. A NULL argument, an unknown tier, a step limit. */
    const loopvm_tensor *null_args[2] = {NULL, decay};
    st = loopvm_call(prog, "main", null_args, 2, NULL, &res, &err);
    bad += st != LOOPVM_ERR_INVALID;
    report("NULL argument", st, err);
    err = NULL;
    loopvm_call_options opts = loopvm_call_options_default();
    opts.tier = 42;
    st = loopvm_call(prog, "main", args, 2, &opts, &res, &err);
    bad += st != LOOPVM_ERR_INVALID;
    report("unknown tier", st, err);
    err = NULL;
    int32_t n = 1000;
    loopvm_tensor *big = NULL;
    loopvm_tensor_new(LOOPVM_I32, 0, NULL, &n, sizeof n, &big, NULL);
    opts = loopvm_call_options_default();
    opts.max_steps = 10;
    const loopvm_tensor *count_args[1] = {big};
    st = loopvm_call(prog, "count", count_args, 1, &opts, &res, &err);
    bad += st != LOOPVM_ERR_LIMIT;
    report("step limit", st, err);
    err = NULL;

    /* 7. Tensors the API refuses: a size that does not match the shape, an unknown dtype, a bool byte of 2. */
    loopvm_tensor *t = NULL;
    st = loopvm_tensor_new(LOOPVM_F32, 2, shape, ints, 5, &t, &err);
    bad += st != LOOPVM_ERR_INVALID || t != NULL;
    report("short data", st, err);
    err = NULL;
    st = loopvm_tensor_new(99, 0, NULL, &half, sizeof half, &t, &err);
    bad += st != LOOPVM_ERR_INVALID;
    report("unknown dtype", st, err);
    err = NULL;
    uint8_t two = 2;
    st = loopvm_tensor_new(LOOPVM_BOOL, 0, NULL, &two, 1, &t, &err);
    bad += st != LOOPVM_ERR_INVALID;
    report("bool of 2", st, err);
    err = NULL;

    /* 8. NULL everywhere: codes, no crash; a NULL err is allowed. */
    st = loopvm_program_compile(NULL, NULL, &broken, &err);
    bad += st != LOOPVM_ERR_INVALID;
    report("NULL source", st, err);
    err = NULL;
    bad += loopvm_call(NULL, NULL, NULL, 0, NULL, &res, NULL) != LOOPVM_ERR_INVALID;
    bad += loopvm_program_compile("fn main() -> i32 { 1 }", NULL, NULL, NULL) != LOOPVM_ERR_INVALID;
    bad += loopvm_tensor_copy_data(xs, NULL, 0, NULL) != LOOPVM_ERR_INVALID;
    bad += loopvm_result_count(NULL) != 0 || loopvm_result_get(NULL, 0) != NULL;
    bad += loopvm_tensor_dtype(NULL) != -1;
    loopvm_program_free(NULL);
    loopvm_tensor_free(NULL);
    loopvm_result_free(NULL);
    loopvm_error_free(NULL);

    loopvm_tensor_free(xs);
    loopvm_tensor_free(decay);
    loopvm_tensor_free(big);
    return bad;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "examples/embed/decay.lb";
    char *source = read_file(path);
    if (!source) {
        fprintf(stderr, "cannot read %s\n", path);
        return 2;
    }
    loopvm_program *prog = NULL;
    loopvm_error *err = NULL;
    loopvm_status st = loopvm_program_compile(source, path, &prog, &err);
    free(source);
    if (st != LOOPVM_OK) {
        report("compile", st, err);
        return 1;
    }
    printf("loopvm %s: %s\n", loopvm_version(), loopvm_program_function_signature(prog, 0));

    /* One compiled program, two threads calling it at once. */
    struct job jobs[2] = {
        {prog, {1, 2, 3, 4, 5, 6}, 0.5f, LOOPVM_OK, "", {0}},
        {prog, {1, 1, 1, 1, 1, 1}, 2.0f, LOOPVM_OK, "", {0}},
    };
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, run_job, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        printf("thread %d: %s\n", i, jobs[i].text);
        printf("thread %d: last = [%g, %g, %g]\n", i, jobs[i].last[0], jobs[i].last[1], jobs[i].last[2]);
        failed += jobs[i].status != LOOPVM_OK;
    }

    int surprises = error_paths(prog);
    printf("error paths: %d unexpected\n", surprises);
    loopvm_program_free(prog);
    return failed || surprises ? 1 : 0;
}
