/*
 * Policy file parser. The YAML document is loaded whole with libyaml and
 * walked against a table of known keys per section, so that an unknown key,
 * a wrong type or a bad name is reported at its line instead of ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sys/stat.h>
#include <yaml.h>

#include "policy.h"

enum field_type { F_STRING, F_BOOL, F_INT, F_LLONG, F_NAMES, F_COLUMNS,
		  F_ONOFF, F_CHOICE };

struct field {
	const char *key;
	enum field_type type;
	size_t offset;		/* into struct policy */
	bool with_column;	/* F_NAMES */
	const char *const *choices;	/* F_CHOICE: the values allowed */
};

struct section {
	const char *key;
	const struct field *fields;
};

struct parse {
	const char *path;
	yaml_document_t *doc;
	struct policy *policy;
	char *err;
	size_t err_len;
};

#define P(member) offsetof(struct policy, member)
#define POLICY_MAX_BYTES (16 << 20)

static const struct field database_fields[] = {
	{ "dsn", F_STRING, P(dsn) },
	{ NULL },
};

static const struct field monetary_fields[] = {
	{ "balance_columns", F_NAMES, P(balance_columns), true },
	{ "allowed_functions", F_NAMES, P(allowed_functions), false },
	{ NULL },
};

static const struct field immutable_fields[] = {
	{ "tables", F_NAMES, P(immutable_tables), false },
	{ NULL },
};

/*
 * Values are checked where they are read, not after the walk: only the
 * value's node knows the line to report.
 */
static const char *const hash_schemes[] = { "pgvigil.postings.v1", NULL };
static const char *const fsync_modes[] = { "always", "interval", "never",
					   NULL };

static const struct field hash_fields[] = {
	{ "events_table", F_STRING, P(hash.events_table) },
	{ "postings_table", F_STRING, P(hash.postings_table) },
	{ "columns", F_COLUMNS, 0 },
	{ "scheme", F_CHOICE, P(hash.scheme), .choices = hash_schemes },
	{ "checkpoint_file", F_STRING, P(hash.checkpoint_file) },
	{ "checkpoint_key", F_STRING, P(hash.checkpoint_key) },
	{ "sweep_interval", F_INT, P(hash.sweep_interval_s) },
	{ NULL },
};

/* hash_integrity.columns: the role of each column, and its name */
static const struct field hash_column_fields[] = {
	{ "seq", F_STRING, P(hash.seq_column) },
	{ "event_id", F_STRING, P(hash.event_id_column) },
	{ "prev_hash", F_STRING, P(hash.prev_hash_column) },
	{ "postings_hash", F_STRING, P(hash.postings_hash_column) },
	{ "event_seq", F_STRING, P(hash.event_seq_column) },
	{ "account", F_STRING, P(hash.account_column) },
	{ "currency", F_STRING, P(hash.currency_column) },
	{ "amount", F_STRING, P(hash.amount_column) },
	{ NULL },
};

static const struct field http_fields[] = {
	{ "tls_cert", F_STRING, P(http.tls_cert) },
	{ "tls_key", F_STRING, P(http.tls_key) },
	{ "tls_client_ca", F_STRING, P(http.tls_client_ca) },
	{ "token_file", F_STRING, P(http.token_file) },
	{ "metrics_open", F_BOOL, P(http.metrics_open) },
	{ NULL },
};

static const struct field journal_fields[] = {
	{ "fsync", F_CHOICE, P(journal.fsync), .choices = fsync_modes },
	{ "max_bytes", F_LLONG, P(journal.max_bytes) },
	{ "keep", F_INT, P(journal.keep) },
	{ NULL },
};

static const struct field dump_fields[] = {
	{ "directory", F_STRING, P(dump.directory) },
	{ "key_file", F_STRING, P(dump.key_file) },
	{ "statements", F_INT, P(dump.statements) },
	{ "min_interval_ms", F_INT, P(dump.min_interval_ms) },
	{ NULL },
};

static const struct field capture_fields[] = {
	{ "wire", F_ONOFF, P(capture_wire) },
	{ NULL },
};

static const struct section sections[] = {
	{ "database", database_fields },
	{ "monetary", monetary_fields },
	{ "immutable", immutable_fields },
	{ "hash_integrity", hash_fields },
	{ "http", http_fields },
	{ "journal", journal_fields },
	{ "dump", dump_fields },
	{ "capture", capture_fields },
	{ NULL, NULL },
};

static int fail(struct parse *p, const yaml_node_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parse *p, const yaml_node_t *node, const char *fmt, ...)
{
	size_t n;
	va_list args;

	n = snprintf(p->err, p->err_len, "%s:%lu: ", p->path,
		     node ? (unsigned long)node->start_mark.line + 1 : 1UL);
	if (n >= p->err_len)
		return -EINVAL;
	va_start(args, fmt);
	vsnprintf(p->err + n, p->err_len - n, fmt, args);
	va_end(args);
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value
					      : NULL;
}

bool policy_glob(const char *pattern, const char *text)
{
	const char *star = NULL, *resume = NULL;

	while (*text) {
		if (*pattern == '*') {
			star = pattern++;
			resume = text;
		} else if (*pattern == *text) {
			pattern++;
			text++;
		} else if (star) {
			pattern = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*pattern == '*')
		pattern++;
	return !*pattern;
}

/*
 * One part of a dotted name: "quoted" keeps its case and may hold dots,
 * unquoted folds to lower case as the server does.
 */
static const char *take_part(const char *s, char **out)
{
	char buf[256];
	size_t n = 0;

	if (*s == '"') {
		for (s++; *s; s++) {
			if (*s == '"' && s[1] == '"')
				s++;
			else if (*s == '"')
				break;
			if (n + 1 >= sizeof(buf))
				return NULL;
			buf[n++] = *s;
		}
		if (*s != '"')
			return NULL;
		s++;
	} else {
		for (; *s && *s != '.'; s++) {
			if (n + 1 >= sizeof(buf) || *s == '"' || isspace(*s))
				return NULL;
			buf[n++] = tolower((unsigned char)*s);
		}
	}
	if (n == 0)
		return NULL;
	buf[n] = 0;
	*out = strdup(buf);
	return *out ? s : NULL;
}

int policy_parse_name(const char *text, bool with_column,
		      struct policy_name *name)
{
	char *parts[3] = { NULL, NULL, NULL };
	const char *s = text;
	int n = 0;

	memset(name, 0, sizeof(*name));
	while (n < 3) {
		s = take_part(s, &parts[n]);
		if (!s)
			break;
		n++;
		if (*s != '.')
			break;
		s++;
	}
	if (!s || *s || n != (with_column ? 3 : 2)) {
		free(parts[0]);
		free(parts[1]);
		free(parts[2]);
		return -EINVAL;
	}
	name->schema = parts[0];
	name->object = parts[1];
	name->column = parts[2];
	return 0;
}

bool policy_names_match(const struct policy_names *names, const char *schema,
			const char *object, const char *column)
{
	size_t i;

	for (i = 0; i < names->count; i++) {
		const struct policy_name *name = &names->items[i];

		if (!policy_glob(name->schema, schema) ||
		    !policy_glob(name->object, object))
			continue;
		if (name->column && column && !policy_glob(name->column, column))
			continue;
		return true;
	}
	return false;
}

static int parse_names(struct parse *p, yaml_node_t *node,
		       struct policy_names *names, bool with_column)
{
	yaml_node_item_t *item;

	if (node->type != YAML_SEQUENCE_NODE)
		return fail(p, node, "expected a list of names");
	for (item = node->data.sequence.items.start;
	     item < node->data.sequence.items.top; item++) {
		yaml_node_t *entry = yaml_document_get_node(p->doc, *item);
		const char *text = scalar(entry);
		struct policy_name *grown;

		if (!text)
			return fail(p, entry, "expected a name");
		grown = realloc(names->items,
				(names->count + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		names->items = grown;
		if (policy_parse_name(text, with_column,
				      &names->items[names->count]))
			return fail(p, entry, "bad name '%s': expected %s", text,
				    with_column ? "schema.table.column"
						: "schema.name");
		names->items[names->count++].line = entry->start_mark.line + 1;
	}
	return 0;
}

/* "a, b or c" of a field's choices, into 'buf'. */
static const char *choice_list(const struct field *field, char *buf,
			       size_t len)
{
	const char *const *choice;
	size_t n = 0;

	buf[0] = 0;
	for (choice = field->choices; *choice && n < len; choice++)
		n += snprintf(buf + n, len - n, "%s%s",
			      choice == field->choices ? ""
			      : choice[1] ? ", " : " or ", *choice);
	return buf;
}

static int parse_choice(struct parse *p, const char *section,
			const struct field *field, yaml_node_t *value,
			char **target)
{
	const char *text = scalar(value);
	const char *const *choice;
	char list[128];

	for (choice = field->choices; *choice; choice++)
		if (!strcmp(*choice, text))
			break;
	if (!*choice)
		return fail(p, value, "%s.%s must be %s, not '%s'", section,
			    field->key, choice_list(field, list, sizeof(list)),
			    text);
	free(*target);
	*target = strdup(text);
	return *target ? 0 : -ENOMEM;
}

static int parse_scalar_field(struct parse *p, const char *section,
			      const struct field *field, yaml_node_t *value,
			      void *target)
{
	const char *text = scalar(value);
	char *end;
	long long number;

	if (!text)
		return fail(p, value, "'%s' expects a single value", field->key);
	switch (field->type) {
	case F_CHOICE:
		return parse_choice(p, section, field, value, target);
	case F_STRING:
		free(*(char **)target);
		*(char **)target = strdup(text);
		return *(char **)target ? 0 : -ENOMEM;
	case F_BOOL:
	case F_ONOFF:
		if (!strcmp(text, "true") || !strcmp(text, "on") ||
		    !strcmp(text, "yes"))
			*(bool *)target = true;
		else if (!strcmp(text, "false") || !strcmp(text, "off") ||
			 !strcmp(text, "no"))
			*(bool *)target = false;
		else
			return fail(p, value, "'%s' expects %s, not '%s'",
				    field->key,
				    field->type == F_ONOFF ? "on or off"
							   : "true or false",
				    text);
		return 0;
	default:
		errno = 0;
		number = strtoll(text, &end, 10);
		if (errno || *end || end == text || number < 0 ||
		    (field->type == F_INT && number > 1 << 30))
			return fail(p, value,
				    "'%s' expects a non-negative integer, not '%s'",
				    field->key, text);
		if (field->type == F_INT)
			*(int *)target = number;
		else
			*(long long *)target = number;
		return 0;
	}
}

static int parse_fields(struct parse *p, yaml_node_t *node,
			const char *section, const struct field *fields);

static int parse_field(struct parse *p, const char *section,
		       const struct field *field, yaml_node_t *value)
{
	void *target = (char *)p->policy + field->offset;

	switch (field->type) {
	case F_NAMES:
		return parse_names(p, value, target, field->with_column);
	case F_COLUMNS:
		return parse_fields(p, value, "hash_integrity.columns",
				    hash_column_fields);
	default:
		return parse_scalar_field(p, section, field, value, target);
	}
}

static int parse_fields(struct parse *p, yaml_node_t *node,
			const char *section, const struct field *fields)
{
	yaml_node_pair_t *pair;
	int err;

	if (node->type != YAML_MAPPING_NODE)
		return fail(p, node, "'%s' must be a mapping", section);
	for (pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = yaml_document_get_node(p->doc, pair->key);
		yaml_node_t *value = yaml_document_get_node(p->doc, pair->value);
		const char *name = scalar(key);
		const struct field *field;

		for (field = fields; name && field->key; field++)
			if (!strcmp(field->key, name))
				break;
		if (!name || !field->key)
			return fail(p, key, "unknown key '%s' in '%s'",
				    name ? name : "?", section);
		err = parse_field(p, section, field, value);
		if (err)
			return err;
	}
	return 0;
}

static int parse_root(struct parse *p, yaml_node_t *root)
{
	yaml_node_pair_t *pair;
	int err;

	if (!root)
		return fail(p, NULL, "the policy is empty");
	if (root->type != YAML_MAPPING_NODE)
		return fail(p, root, "the policy must be a mapping of sections");
	for (pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = yaml_document_get_node(p->doc, pair->key);
		yaml_node_t *value = yaml_document_get_node(p->doc, pair->value);
		const char *name = scalar(key);
		const struct section *section;

		for (section = sections; name && section->key; section++)
			if (!strcmp(section->key, name))
				break;
		if (!name || !section->key)
			return fail(p, key, "unknown section '%s'",
				    name ? name : "?");
		err = parse_fields(p, value, section->key, section->fields);
		if (err)
			return err;
		if (!strcmp(section->key, "hash_integrity"))
			p->policy->hash.enabled = true;
	}
	return 0;
}

static int set_default(char **field, const char *value)
{
	if (*field)
		return 0;
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

static int apply_defaults(struct parse *p)
{
	struct policy_hash *h = &p->policy->hash;
	struct {
		char **field;
		const char *value;
	} defaults[] = {
		{ &h->events_table, "public.ledger_events" },
		{ &h->postings_table, "public.postings" },
		{ &h->seq_column, "seq" },
		{ &h->event_id_column, "event_id" },
		{ &h->prev_hash_column, "prev_hash" },
		{ &h->postings_hash_column, "postings_hash" },
		{ &h->event_seq_column, "event_seq" },
		{ &h->account_column, "account" },
		{ &h->currency_column, "currency" },
		{ &h->amount_column, "amount" },
		{ &h->scheme, "pgvigil.postings.v1" },
		{ &p->policy->journal.fsync, "always" },
	};
	size_t i;

	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (set_default(defaults[i].field, defaults[i].value))
			return -ENOMEM;
	if (!p->policy->dsn)
		return fail(p, NULL, "missing 'database.dsn'");
	if (!p->policy->dump.statements)
		p->policy->dump.statements = 64;
	if (!p->policy->journal.keep)
		p->policy->journal.keep = 8;
	if (!p->policy->dump.min_interval_ms)
		p->policy->dump.min_interval_ms = 1000;
	return 0;
}

static char *file_digest(FILE *f)
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[8192];
	unsigned int md_len = 0, i;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *hex;
	size_t n;

	if (!ctx)
		return NULL;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	rewind(f);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	EVP_DigestFinal_ex(ctx, md, &md_len);
	EVP_MD_CTX_free(ctx);
	rewind(f);
	hex = malloc(md_len * 2 + 1);
	for (i = 0; hex && i < md_len; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	return hex;
}

static int load_document(struct parse *p, FILE *f)
{
	yaml_parser_t parser;
	int err = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, p->doc)) {
		snprintf(p->err, p->err_len, "%s:%lu: %s%s%s", p->path,
			 (unsigned long)parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "malformed YAML",
			 parser.context ? " " : "",
			 parser.context ? parser.context : "");
		err = -EINVAL;
	}
	yaml_parser_delete(&parser);
	return err;
}

int policy_load(const char *path, struct policy **out, char *err,
		size_t err_len)
{
	struct parse p = { .path = path, .err = err, .err_len = err_len };
	yaml_document_t doc;
	struct stat st;
	FILE *f;
	int ret;

	*out = NULL;
	f = fopen(path, "r");
	if (!f) {
		ret = -errno;
		snprintf(err, err_len, "cannot open policy '%s': %s", path,
			 strerror(-ret));
		return ret;
	}
	/* a device or a directory would hang or confuse the YAML reader */
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) ||
	    st.st_size > POLICY_MAX_BYTES) {
		snprintf(err, err_len, "policy '%s' is not a regular file of at "
			 "most %d MiB", path, POLICY_MAX_BYTES >> 20);
		fclose(f);
		return -EINVAL;
	}
	p.doc = &doc;
	p.policy = calloc(1, sizeof(*p.policy));
	if (!p.policy) {
		fclose(f);
		return -ENOMEM;
	}
	p.policy->path = strdup(path);
	p.policy->digest = file_digest(f);
	ret = load_document(&p, f);
	fclose(f);
	if (ret) {
		policy_free(p.policy);
		return ret;
	}
	ret = parse_root(&p, yaml_document_get_root_node(&doc));
	yaml_document_delete(&doc);
	if (!ret)
		ret = apply_defaults(&p);
	if (ret) {
		if (ret == -ENOMEM)
			snprintf(err, err_len, "%s: out of memory", path);
		policy_free(p.policy);
		return ret;
	}
	*out = p.policy;
	return 0;
}

static void free_names(struct policy_names *names)
{
	size_t i;

	for (i = 0; i < names->count; i++) {
		free(names->items[i].schema);
		free(names->items[i].object);
		free(names->items[i].column);
	}
	free(names->items);
}

void policy_free(struct policy *policy)
{
	char **strings[] = {
		&policy->path, &policy->dsn, &policy->digest,
		&policy->hash.events_table, &policy->hash.postings_table,
		&policy->hash.seq_column, &policy->hash.event_id_column,
		&policy->hash.prev_hash_column,
		&policy->hash.postings_hash_column,
		&policy->hash.event_seq_column, &policy->hash.account_column,
		&policy->hash.currency_column, &policy->hash.amount_column,
		&policy->hash.scheme, &policy->hash.checkpoint_file,
		&policy->hash.checkpoint_key, &policy->http.tls_cert,
		&policy->http.tls_key, &policy->http.tls_client_ca,
		&policy->http.token_file, &policy->journal.fsync,
		&policy->dump.directory, &policy->dump.key_file,
	};
	size_t i;

	if (!policy)
		return;
	for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		free(*strings[i]);
	free_names(&policy->balance_columns);
	free_names(&policy->allowed_functions);
	free_names(&policy->immutable_tables);
	free(policy);
}
