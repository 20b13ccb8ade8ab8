/*
 * hello.c: a launcher plugin written in C, with one tool, hello-c, that answers a chat prompt.
 *
 * It implements ABI 2.0 only, on purpose: its table holds just the 2.0 fields and says so in
 * its size, and it reads only the 2.0 fields of the sink. That a newer host runs it is the
 * proof that the growth rule of launcher_plugin.h holds.
 *
 * The library must be named liblauncher_plugin_hello_c.so: the host takes the plugin's name
 * from the file name (underscores become dashes), and it must equal the manifest's "name".
 *
 * Build: cc -std=c99 -shared -fPIC -I ../../include -o liblauncher_plugin_hello_c.so hello.c
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "launcher_plugin.h"

/* ---------------------------------------------------------------------------------------- */
/* The table, as ABI 2.0 froze it */

/* LauncherPluginApi without the fields minor 1 appended. */
typedef struct HelloApi {
    uint32_t size;
    uint32_t abi_minor;
    int32_t (*manifest)(LauncherBuffer *out);
    int32_t (*create)(LauncherBytes request, void **instance, LauncherBuffer *out);
    int32_t (*invoke)(const void *instance, LauncherBytes job, const LauncherSink *sink,
                      LauncherBuffer *out);
    void (*destroy)(void *instance);
    void (*free_buffer)(LauncherBuffer buffer);
} HelloApi;

/* Fails to compile unless HelloApi is exactly the 2.0 part of LauncherPluginApi. */
typedef char hello_api_is_the_2_0_table[(sizeof(HelloApi) == offsetof(LauncherPluginApi, describe)
                                         && offsetof(HelloApi, free_buffer)
                                                == offsetof(LauncherPluginApi, free_buffer))
                                            ? 1
                                            : -1];

static const char MANIFEST[] =
    "{\"name\":\"hello-c\",\"version\":\"0.1.0\","
    "\"description\":\"a plugin written in C\","
    "\"abi\":2,\"abi_minor\":0,\"sdk_version\":\"\","
    "\"tools\":[{\"id\":\"hello-c\",\"description\":\"answers a prompt with a greeting, from C\","
    "\"tasks\":[\"chat\"]}]}";

static const char TEXT_HEADER[] =
    "{\"name\":\"text\",\"kind\":\"text\",\"media_type\":\"text/plain\",\"extension\":\"txt\"}";

/* ---------------------------------------------------------------------------------------- */
/* Buffers: allocated here with malloc, freed here by hello_free_buffer */

/* Copies len bytes into a new buffer in *out; returns status, or an error status when out of
 * memory (with an empty buffer, which the host accepts). */
static int32_t reply(LauncherBuffer *out, int32_t status, const char *bytes, size_t len) {
    out->ptr = NULL;
    out->len = 0;
    if (len == 0) {
        return status;
    }
    out->ptr = malloc(len);
    if (out->ptr == NULL) {
        return LAUNCHER_STATUS_ERROR;
    }
    memcpy(out->ptr, bytes, len);
    out->len = len;
    return status;
}

/* Replies with a JSON error; message must need no JSON escaping. */
static int32_t reply_error(LauncherBuffer *out, const char *kind, const char *message) {
    const char *parts[] = {"{\"kind\":\"", kind, "\",\"message\":\"", message, "\"}"};
    size_t len = 0;
    size_t i;
    char *json;
    int32_t status;
    for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        len += strlen(parts[i]);
    }
    json = malloc(len + 1);
    if (json == NULL) {
        return reply(out, LAUNCHER_STATUS_ERROR, NULL, 0);
    }
    json[0] = '\0';
    for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        strcat(json, parts[i]);
    }
    status = reply(out, LAUNCHER_STATUS_ERROR, json, len);
    free(json);
    return status;
}

static void hello_free_buffer(LauncherBuffer buffer) {
    free(buffer.ptr);
}

/* ---------------------------------------------------------------------------------------- */
/* A small JSON reader: enough to find one string in the job, without a JSON library */

typedef struct Reader {
    const uint8_t *at;
    const uint8_t *end;
} Reader;

static void skip_space(Reader *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r')) {
        r->at++;
    }
}

static int eat(Reader *r, uint8_t c) {
    skip_space(r);
    if (r->at < r->end && *r->at == c) {
        r->at++;
        return 1;
    }
    return 0;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits of a \u escape into *unit. */
static int read_hex4(Reader *r, uint32_t *unit) {
    int i;
    *unit = 0;
    if (r->end - r->at < 4) return 0;
    for (i = 0; i < 4; i++) {
        int d = hex_digit(r->at[i]);
        if (d < 0) return 0;
        *unit = (*unit << 4) | (uint32_t)d;
    }
    r->at += 4;
    return 1;
}

/* Appends code point c as UTF-8 to out (which has room for 4 more bytes). */
static size_t put_utf8(uint8_t *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Reads a JSON string. With out non-NULL (room for as many bytes as the JSON text has left,
 * which a decoded string never exceeds) it stores the decoded bytes and their count in *len.
 * Returns 0 on malformed input. */
static int read_string(Reader *r, uint8_t *out, size_t *len) {
    size_t n = 0;
    if (!eat(r, '"')) return 0;
    while (r->at < r->end) {
        uint8_t c = *r->at++;
        uint8_t buf[4];
        size_t k = 1;
        if (c == '"') {
            if (len != NULL) *len = n;
            return 1;
        }
        if (c < 0x20) return 0;
        buf[0] = c;
        if (c == '\\') {
            if (r->at >= r->end) return 0;
            c = *r->at++;
            switch (c) {
            case '"': buf[0] = '"'; break;
            case '\\': buf[0] = '\\'; break;
            case '/': buf[0] = '/'; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                uint32_t unit, low;
                if (!read_hex4(r, &unit)) return 0;
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    /* A high surrogate must be followed by an escaped low one. */
                    if (r->end - r->at < 2 || r->at[0] != '\\' || r->at[1] != 'u') return 0;
                    r->at += 2;
                    if (!read_hex4(r, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                    return 0;
                }
                k = put_utf8(buf, unit);
                break;
            }
            default:
                return 0;
            }
        }
        if (out != NULL) memcpy(out + n, buf, k);
        n += k;
    }
    return 0;
}

static int skip_value(Reader *r, int depth);

/* Skips an object or array whose opening bracket was just read. */
static int skip_container(Reader *r, uint8_t close, int depth) {
    if (eat(r, close)) return 1;
    for (;;) {
        if (close == '}') {
            if (!read_string(r, NULL, NULL) || !eat(r, ':')) return 0;
        }
        if (!skip_value(r, depth + 1)) return 0;
        if (eat(r, close)) return 1;
        if (!eat(r, ',')) return 0;
    }
}

/* Skips one value of any type; nesting is bounded so hostile input cannot exhaust the stack. */
static int skip_value(Reader *r, int depth) {
    if (depth > 64) return 0;
    skip_space(r);
    if (r->at >= r->end) return 0;
    switch (*r->at) {
    case '"':
        return read_string(r, NULL, NULL);
    case '{':
        r->at++;
        return skip_container(r, '}', depth);
    case '[':
        r->at++;
        return skip_container(r, ']', depth);
    default: {
        /* A number, true, false or null: a run of these characters. */
        const uint8_t *start = r->at;
        while (r->at < r->end && (strchr("0123456789+-.eEtruefalsn", *r->at) != NULL)) {
            r->at++;
        }
        return r->at > start;
    }
    }
}

/* Moves r to the value of `key` in the object starting at r; returns 0 when it is absent. */
static int find_key(Reader *r, const char *key) {
    size_t key_len = strlen(key);
    if (!eat(r, '{')) return 0;
    if (eat(r, '}')) return 0;
    for (;;) {
        Reader probe = *r;
        size_t len;
        uint8_t name[64];
        /* Keys longer than any we look for are skipped without decoding them. */
        if (!read_string(&probe, NULL, &len)) return 0;
        if (len <= sizeof name) {
            if (!read_string(r, name, &len)) return 0;
        } else {
            *r = probe;
        }
        if (!eat(r, ':')) return 0;
        if (len == key_len && memcmp(name, key, key_len) == 0) {
            skip_space(r);
            return 1;
        }
        if (!skip_value(r, 1)) return 0;
        if (!eat(r, ',')) return 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The plugin */

static int32_t hello_manifest(LauncherBuffer *out) {
    return reply(out, LAUNCHER_STATUS_OK, MANIFEST, sizeof MANIFEST - 1);
}

/* The instance keeps nothing; it exists because the host needs a non-null handle. */
typedef struct Hello {
    int unused;
} Hello;

static int32_t hello_create(LauncherBytes request, void **instance, LauncherBuffer *out) {
    Hello *hello;
    (void)request;
    hello = calloc(1, sizeof *hello);
    if (hello == NULL) {
        return reply_error(out, "internal", "out of memory");
    }
    *instance = hello;
    return reply(out, LAUNCHER_STATUS_OK, "null", 4);
}

static void hello_destroy(void *instance) {
    free(instance);
}

static int32_t hello_invoke(const void *instance, LauncherBytes job, const LauncherSink *sink,
                            LauncherBuffer *out) {
    static const char greeting[] = "Hello from C! You said: ";
    Reader r;
    uint8_t *answer;
    size_t prompt_len = 0;
    size_t answer_len;
    uint32_t id;
    int32_t status;
    (void)instance;

    if (sink->size < LAUNCHER_SINK_SIZE_2_0) {
        return reply_error(out, "internal", "the host passed a sink smaller than ABI 2.0");
    }

    /* The decoded prompt is never longer than the job's JSON text. */
    answer = malloc(sizeof greeting - 1 + job.len + 1);
    if (answer == NULL) {
        return reply_error(out, "internal", "out of memory");
    }
    memcpy(answer, greeting, sizeof greeting - 1);
    r.at = job.ptr;
    r.end = job.ptr + job.len;
    if (!find_key(&r, "params") || !find_key(&r, "prompt")
        || !read_string(&r, answer + sizeof greeting - 1, &prompt_len)) {
        free(answer);
        return reply_error(out, "invalid_input", "the job has no text parameter `prompt`");
    }
    answer_len = sizeof greeting - 1 + prompt_len;
    answer[answer_len++] = '\n';

    {
        LauncherBytes header = {(const uint8_t *)TEXT_HEADER, sizeof TEXT_HEADER - 1};
        LauncherBytes bytes = {answer, answer_len};
        status = sink->open_output(sink->ctx, header, &id);
        if (status == LAUNCHER_SINK_OK) status = sink->write_output(sink->ctx, id, bytes);
        if (status == LAUNCHER_SINK_OK) status = sink->close_output(sink->ctx, id);
    }
    free(answer);
    if (status != LAUNCHER_SINK_OK) {
        return reply_error(out, "cancelled", "the host asked the job to stop");
    }
    return reply(out, LAUNCHER_STATUS_OK, "{}", 2);
}

/* ---------------------------------------------------------------------------------------- */
/* The exports */

LAUNCHER_EXPORT const LauncherPluginHeader LAUNCHER_PLUGIN_HEADER = {
    LAUNCHER_MAGIC, LAUNCHER_ABI_MAJOR, 0, LAUNCHER_HEADER_SIZE_2_0};

static const HelloApi API = {
    sizeof(HelloApi), 0,          hello_manifest, hello_create, hello_invoke,
    hello_destroy,    hello_free_buffer,
};

LAUNCHER_EXPORT const LauncherPluginApi *launcher_plugin_init(uint32_t host_abi_minor) {
    /* A 2.0 plugin needs nothing a later host added, so any minor will do. */
    (void)host_abi_minor;
    return (const LauncherPluginApi *)(const void *)&API;
}
