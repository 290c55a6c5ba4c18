/*
 * Binary COPY reader. The server sends the 19-byte file header in front of
 * the first row, in the same CopyData message, and one row per message
 * after it; the parser does not count on that framing beyond reading each
 * message to its end.
 */
#include <errno.h>
#include <string.h>

#include "pgcopy.h"

static const char copy_signature[11] = "PGCOPY\n\377\r\n\0";

int pgcopy_start(struct pgcopy *copy, PGconn *conn, const char *query)
{
	PGresult *result;
	int ok;

	memset(copy, 0, sizeof(*copy));
	copy->conn = conn;
	result = PQexec(conn, query);
	ok = PQresultStatus(result) == PGRES_COPY_OUT;
	PQclear(result);
	return ok ? 0 : -EIO;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

int64_t pgcopy_int64(const struct pgcopy_field *field)
{
	uint64_t value = 0;
	int i;

	for (i = 0; field->data && i < field->length && i < 8; i++)
		value = value << 8 | field->data[i];
	return (int64_t)value;
}

/* The end of the COPY: the command's own result says whether it succeeded. */
static int finish(struct pgcopy *copy)
{
	PGresult *result;
	int ret = 0;

	while ((result = PQgetResult(copy->conn))) {
		if (PQresultStatus(result) != PGRES_COMMAND_OK)
			ret = -EIO;
		PQclear(result);
	}
	return ret ? ret : (copy->ended ? 0 : -EPROTO);
}

static int next_message(struct pgcopy *copy)
{
	if (copy->message)
		PQfreemem(copy->message);
	copy->message = NULL;
	copy->offset = 0;
	copy->length = PQgetCopyData(copy->conn, &copy->message, 0);
	if (copy->length == -1)
		return 0;
	if (copy->length < 0)
		return -EIO;
	return 1;
}

static int skip_header(struct pgcopy *copy)
{
	const uint8_t *p = (const uint8_t *)copy->message;
	uint32_t extension;

	if (copy->length < 19 || memcmp(p, copy_signature, 11))
		return -EPROTO;
	extension = be32(p + 15);
	if (extension > (uint32_t)copy->length - 19)
		return -EPROTO;
	copy->offset = 19 + extension;
	copy->header_seen = true;
	return 0;
}

static int parse_row(struct pgcopy *copy, struct pgcopy_field *fields,
		     int count)
{
	const uint8_t *p = (const uint8_t *)copy->message + copy->offset;
	const uint8_t *end = (const uint8_t *)copy->message + copy->length;
	int16_t n;
	int32_t len;
	int i;

	if (end - p < 2)
		return -EPROTO;
	n = (int16_t)(p[0] << 8 | p[1]);
	p += 2;
	if (n == -1) {
		copy->ended = true;
		copy->offset = copy->length;
		return 0;
	}
	if (n != count)
		return -EPROTO;
	for (i = 0; i < count; i++) {
		if (end - p < 4)
			return -EPROTO;
		len = (int32_t)be32(p);
		p += 4;
		if (len > end - p || len < -1)
			return -EPROTO;
		fields[i].data = len < 0 ? NULL : p;
		fields[i].length = len < 0 ? 0 : len;
		p += len < 0 ? 0 : len;
	}
	copy->offset = p - (const uint8_t *)copy->message;
	return 1;
}

int pgcopy_next(struct pgcopy *copy, struct pgcopy_field *fields, int count)
{
	int ret;

	for (;;) {
		if (copy->message && copy->offset < copy->length) {
			ret = parse_row(copy, fields, count);
			if (ret)
				return ret;
			continue;
		}
		ret = next_message(copy);
		if (ret <= 0)
			return ret < 0 ? ret : finish(copy);
		if (!copy->header_seen) {
			ret = skip_header(copy);
			if (ret)
				return ret;
		}
	}
}

void pgcopy_end(struct pgcopy *copy)
{
	if (copy->message)
		PQfreemem(copy->message);
	copy->message = NULL;
}
