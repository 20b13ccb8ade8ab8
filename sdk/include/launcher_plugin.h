/*
 * launcher_plugin.h: the launcher plugin ABI, version 2.2, for plugins written in C (or any
 * language that can export C symbols).
 *
 * This header says in C what sdk/src/abi.rs says in Rust; sdk/tests/c_header.rs compiles it
 * and checks every size, offset and value against the Rust definitions.
 *
 * A plugin is a shared library named liblauncher_plugin_<name>.so (.dylib on macOS,
 * launcher_plugin_<name>.dll on Windows); the host takes <name> from the file name, turning
 * underscores into dashes, and it must equal the "name" of the plugin's manifest. The library
 * exports two symbols:
 *
 *   - LAUNCHER_PLUGIN_HEADER, a LauncherPluginHeader the host reads before it calls any
 *     plugin code: magic bytes, ABI major and minor, and the header's size;
 *   - launcher_plugin_init, a LauncherInitFn that receives the host's ABI minor and returns
 *     a pointer to a LauncherPluginApi table that lives as long as the library.
 *
 * Messages are JSON, UTF-8, passed as byte slices without a terminating NUL: the manifest,
 * create requests, jobs, job results, errors, output headers, progress, log lines,
 * checkpoints and costs (their fields are documented on the Rust types in sdk/src/types.rs and
 * sdk/src/error.rs). A peer ignores JSON fields and enumeration values it does not know.
 *
 * Memory is freed by the side that allocated it:
 *   - a LauncherBytes one side passes is borrowed for the duration of that one call;
 *   - a LauncherBuffer the plugin fills in (the "out" parameters) is the plugin's memory; the
 *     host reads it and hands it back, once, to free_buffer. The plugin may leave it
 *     {NULL, 0}.
 *
 * Growth: ABI 2.0 froze the size of every table (LAUNCHER_*_SIZE_2_0). A minor version only
 * appends fields. Each side accepts any table at least the 2.0 size and reads a field past
 * the 2.0 part only when the table's size covers the whole field. The init function
 * receives the host's minor: a plugin newer than its host uses only what that host has. A
 * plugin that implements only ABI 2.0 returns a table of the 2.0 fields with size
 * LAUNCHER_API_SIZE_2_0, and reads only the 2.0 fields of the sink.
 *
 * Threads: invoke may run on several threads at once (unless the manifest marks the tool
 * "serial"); the sink it receives may be called only on the thread that called invoke, and
 * only until invoke returns. Nothing may unwind (C++ exceptions, longjmp) across these
 * functions.
 */

#ifndef LAUNCHER_PLUGIN_H
#define LAUNCHER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/* Versions, symbols and magic */

/* The ABI major version; a host refuses a plugin of any other major. */
#define LAUNCHER_ABI_MAJOR 2
/* The ABI minor version this header describes; minors only append fields. */
#define LAUNCHER_ABI_MINOR 2

/* The first 8 bytes of every header: the 7 letters and a NUL (the string literal's own). */
#define LAUNCHER_MAGIC "LNCHPLG"
#define LAUNCHER_MAGIC_LEN 8

/* The names of the two exported symbols. */
#define LAUNCHER_HEADER_SYMBOL "LAUNCHER_PLUGIN_HEADER"
#define LAUNCHER_INIT_SYMBOL "launcher_plugin_init"

/* Marks a definition as exported from the shared library. */
#if defined(_WIN32)
#define LAUNCHER_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define LAUNCHER_EXPORT __attribute__((visibility("default")))
#else
#define LAUNCHER_EXPORT
#endif

/* ---------------------------------------------------------------------------------------- */
/* Status codes */

/* The call succeeded; the out buffer holds its JSON result. */
#define LAUNCHER_STATUS_OK 0
/* The call failed; the out buffer holds a JSON error:
 * {"kind":"invalid_input","message":"...","hint":"..."} where kind is one of invalid_input,
 * unauthorized, rate_limited, unavailable, timeout, cancelled, internal. */
#define LAUNCHER_STATUS_ERROR 1
/* The call crashed in a way the plugin caught; the out buffer holds a UTF-8 message. */
#define LAUNCHER_STATUS_PANIC 2

/* A sink call went through; the job goes on. */
#define LAUNCHER_SINK_OK 0
/* The host wants the job to stop (cancelled, or the output cannot be written). */
#define LAUNCHER_SINK_STOP 1
/* The host refused the call as a protocol error (unknown output id, unreadable JSON); the
 * job must stop. */
#define LAUNCHER_SINK_REFUSED 2
/* checkpoint only: the host keeps no checkpoints for this job; the job goes on. */
#define LAUNCHER_SINK_UNSUPPORTED 3

/* ---------------------------------------------------------------------------------------- */
/* Types */

/* Read by the host before any plugin code runs. Its size never changes. */
typedef struct LauncherPluginHeader {
    uint8_t magic[LAUNCHER_MAGIC_LEN]; /* LAUNCHER_MAGIC, NUL included */
    uint32_t abi_major;                /* LAUNCHER_ABI_MAJOR */
    uint32_t abi_minor;                /* the minor the plugin was written for */
    uint32_t size;                     /* sizeof(LauncherPluginHeader) */
} LauncherPluginHeader;

/* A borrowed byte slice, valid for one call. ptr may be anything when len is 0. */
typedef struct LauncherBytes {
    const uint8_t *ptr;
    size_t len;
} LauncherBytes;

/* Bytes the plugin allocated; the host gives them back to free_buffer. */
typedef struct LauncherBuffer {
    uint8_t *ptr; /* NULL for none */
    size_t len;
} LauncherBuffer;

/* The host's callbacks for one invoke. Every callback returns LAUNCHER_SINK_OK to go on;
 * anything else means the job must stop (return from invoke, with an error or not). */
typedef struct LauncherSink {
    /* ---- ABI 2.0 ---- */

    /* The sink's size as the host built it; fields past it are absent. */
    uint32_t size;
    /* The host's state: pass it back as the first argument of every callback. */
    void *ctx;
    /* Opens an output described by a JSON header, e.g.
     * {"name":"text","kind":"text","media_type":"text/plain","extension":"txt"},
     * and writes its id into *id. */
    int32_t (*open_output)(void *ctx, LauncherBytes header, uint32_t *id);
    /* Appends bytes to an open output. Large outputs go in several calls. */
    int32_t (*write_output)(void *ctx, uint32_t id, LauncherBytes bytes);
    /* Closes an output: it is complete. Outputs of a failed job are left open. */
    int32_t (*close_output)(void *ctx, uint32_t id);
    /* Reports progress: {"fraction":0.5,"message":"..."} (fraction may be null). */
    int32_t (*progress)(void *ctx, LauncherBytes progress);
    /* Sends a log line: {"level":"info","message":"..."}. */
    int32_t (*log)(void *ctx, LauncherBytes line);
    /* Returns non-zero when the job should stop. */
    int32_t (*is_cancelled)(void *ctx);

    /* ---- appended by ABI 2.1: read only when size covers the field ---- */

    /* Records a checkpoint (a small JSON value, such as a remote task id) that a later run
     * of the job receives as "resume"; LAUNCHER_SINK_UNSUPPORTED when the host keeps none. */
    int32_t (*checkpoint)(void *ctx, LauncherBytes value);

    /* ---- appended by ABI 2.2: read only when size covers the field and the host's minor
     *      is at least 2 ---- */

    /* Asks the user to accept what a paid job will cost, before it is submitted:
     * {"amount":0.5,"currency":"USD","what":"10 s of gen4_turbo video"}. LAUNCHER_SINK_OK
     * when accepted; LAUNCHER_SINK_STOP when declined or refused: submit nothing and fail
     * the job as cancelled. */
    int32_t (*confirm)(void *ctx, LauncherBytes cost);
} LauncherSink;

/* The table launcher_plugin_init returns. Fields are only ever appended. */
typedef struct LauncherPluginApi {
    /* ---- ABI 2.0 ---- */

    /* The table's size as the plugin built it; fields past it are absent. */
    uint32_t size;
    /* The ABI minor of the table. */
    uint32_t abi_minor;
    /* Writes the JSON manifest into *out. */
    int32_t (*manifest)(LauncherBuffer *out);
    /* Creates an instance from a JSON create request {"tool":"...","settings":{...}} and
     * writes it into *instance; on error *out holds the JSON error. */
    int32_t (*create)(LauncherBytes request, void **instance, LauncherBuffer *out);
    /* Runs a JSON job {"task":"chat","tool":"...","params":{...}} on an instance, writing
     * outputs through sink; *out holds the JSON job result ({} will do) or the error. */
    int32_t (*invoke)(const void *instance, LauncherBytes job, const LauncherSink *sink,
                      LauncherBuffer *out);
    /* Destroys an instance create made. */
    void (*destroy)(void *instance);
    /* Frees a buffer this plugin wrote into an out parameter. */
    void (*free_buffer)(LauncherBuffer buffer);

    /* ---- appended by ABI 2.1: the host reads it only when size covers it ---- */

    /* Answers a JSON describe request with a JSON describe response. */
    int32_t (*describe)(LauncherBytes request, LauncherBuffer *out);
} LauncherPluginApi;

/* The type of launcher_plugin_init. host_abi_minor is the minor the host speaks. */
typedef const LauncherPluginApi *(*LauncherInitFn)(uint32_t host_abi_minor);

/* ---------------------------------------------------------------------------------------- */
/* Frozen sizes */

/* The sizes of the tables as ABI 2.0 froze them: everything before the first field minor 1
 * appended. On 64-bit targets they are 20, 48 and 64 bytes. */
#define LAUNCHER_HEADER_SIZE_2_0 ((uint32_t)20)
#define LAUNCHER_API_SIZE_2_0 ((uint32_t)offsetof(LauncherPluginApi, describe))
#define LAUNCHER_SINK_SIZE_2_0 ((uint32_t)offsetof(LauncherSink, checkpoint))
/* The size of the sink as ABI 2.1 froze it: everything before confirm (72 bytes on 64-bit). */
#define LAUNCHER_SINK_SIZE_2_1 ((uint32_t)offsetof(LauncherSink, confirm))

/* Returns whether a table whose size member says `size` holds all of `field` of struct
 * `type`, e.g. LAUNCHER_COVERS(sink->size, LauncherSink, checkpoint). */
#define LAUNCHER_COVERS(size, type, field) \
    ((size_t)(size) >= offsetof(type, field) + sizeof(((type *)0)->field))

#ifdef __cplusplus
}
#endif

#endif /* LAUNCHER_PLUGIN_H */
