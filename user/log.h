/*
 * The one logger: levels, text on a terminal and JSON lines elsewhere (or as
 * chosen), libbpf's output routed through it. Modules log at debug only;
 * the boundary that decides what to do with an error logs it once.
 * Thread-safe: each message is one write(2) to stderr.
 */
#ifndef USER_LOG_H
#define USER_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include <bpf/libbpf.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_AUTO, LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Set the threshold and the format; AUTO means text on a terminal. */
void log_setup(enum log_level level, enum log_format format);

/* Parse "text", "json" or "auto"; returns 0 or -EINVAL. */
int log_parse_format(const char *name, enum log_format *format);

/* Parse "debug", "info", "warning" or "error"; returns 0 or -EINVAL. */
int log_parse_level(const char *name, enum log_level *level);

bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Write a structured event line ({"event":name, ...fields}) on stderr, in
 * JSON whatever the format: scripts wait for these ("ready").
 * 'fields_json' is a JSON object's members without braces, or NULL.
 */
void log_event(const char *name, const char *fields_json);

/* libbpf print callback: routes its messages through log_msg. */
int log_libbpf(enum libbpf_print_level level, const char *fmt, va_list args);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif /* USER_LOG_H */
