/*
 * The logger. State is set once by log_setup before threads start and only
 * read afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "log.h"

static enum log_level threshold = LOG_INFO;
static bool json_output;

static const char *const level_names[] = {
	[LOG_DEBUG] = "debug",
	[LOG_INFO] = "info",
	[LOG_WARN] = "warning",
	[LOG_ERROR] = "error",
};

void log_setup(enum log_level level, enum log_format format)
{
	threshold = level;
	if (format == LOG_FORMAT_AUTO)
		json_output = !isatty(STDERR_FILENO);
	else
		json_output = format == LOG_FORMAT_JSON;
}

int log_parse_format(const char *name, enum log_format *format)
{
	if (!strcmp(name, "auto"))
		*format = LOG_FORMAT_AUTO;
	else if (!strcmp(name, "text"))
		*format = LOG_FORMAT_TEXT;
	else if (!strcmp(name, "json"))
		*format = LOG_FORMAT_JSON;
	else
		return -EINVAL;
	return 0;
}

int log_parse_level(const char *name, enum log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcmp(name, level_names[i])) {
			*level = i;
			return 0;
		}
	}
	return -EINVAL;
}

bool log_enabled(enum log_level level)
{
	return level >= threshold;
}

static void timestamp(char *buf, size_t len)
{
	struct timespec now;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", now.tv_nsec / 1000);
}

static void write_line(const char *line, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(STDERR_FILENO, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= n;
	}
}

static void vlog(enum log_level level, const char *fmt, va_list args)
{
	char message[2048], stamp[40];
	struct json_object *obj;
	const char *text;
	char line[2300];
	int n;

	vsnprintf(message, sizeof(message), fmt, args);
	n = strlen(message);
	while (n > 0 && message[n - 1] == '\n')
		message[--n] = 0;
	timestamp(stamp, sizeof(stamp));
	if (!json_output) {
		n = snprintf(line, sizeof(line), "pgvigil: %s: %s\n",
			     level_names[level], message);
		write_line(line, n < (int)sizeof(line) ? (size_t)n
						       : sizeof(line) - 1);
		return;
	}
	obj = json_object_new_object();
	json_object_object_add(obj, "time", json_object_new_string(stamp));
	json_object_object_add(obj, "level",
			       json_object_new_string(level_names[level]));
	json_object_object_add(obj, "message", json_object_new_string(message));
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	n = snprintf(line, sizeof(line), "%s\n", text);
	write_line(line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	json_object_put(obj);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list args;

	if (level < threshold)
		return;
	va_start(args, fmt);
	vlog(level, fmt, args);
	va_end(args);
}

void log_event(const char *name, const char *fields_json)
{
	char line[4096];
	int n;

	n = snprintf(line, sizeof(line), "{\"event\":\"%s\"%s%s}\n", name,
		     fields_json && *fields_json ? "," : "",
		     fields_json ? fields_json : "");
	write_line(line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

int log_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	enum log_level ours;

	switch (level) {
	case LIBBPF_WARN:
		ours = LOG_WARN;
		break;
	case LIBBPF_INFO:
		ours = LOG_INFO;
		break;
	default:
		ours = LOG_DEBUG;
		break;
	}
	/* libbpf is chatty at info; keep it at debug unless it warns */
	if (ours == LOG_INFO)
		ours = LOG_DEBUG;
	if (ours >= threshold)
		vlog(ours, fmt, args);
	return 0;
}
