/*
 * The client's side of the conversation: what each backend reads from its
 * connection, after TLS.
 *
 * Why secure_read(Port *port, void *ptr, size_t len): every byte a backend
 * takes from its client passes through it (pq_recvbuf and
 * pq_getbyte_if_available fill PqRecvBuffer with it), from the startup
 * packet on, and it returns plaintext: with TLS it calls be_tls_read, and the
 * handshake itself goes through secure_raw_read, which is not probed. The
 * pointer is only known at entry and the byte count only at return, so the
 * entry parks both in the backend's entry. A deeper point (pq_getmessage)
 * would cost a probe per message instead of one per read, and would miss the
 * startup packet and the message type byte.
 *
 * A read is at most PQ_RECV_BUFFER_SIZE (8 KiB) in PostgreSQL 15, so the
 * PGV_WIRE_CHUNKS chunks sent cover it whole; anything longer is cut, flagged
 * by offset + captured < read_len, and counted.
 */
#include "common.bpf.h"

/* secure_read(Port *port, void *ptr, size_t len) */
SEC("uprobe")
int BPF_KPROBE(wire_read_entry, void *port, void *ptr)
{
	struct pgv_backend *backend;

	if (pgv_foreign())
		return 0;

	backend = pgv_backend_get(bpf_get_current_pid_tgid() >> 32);
	if (!backend)
		return 0;
	backend->wire_buf = (__u64)ptr;
	backend->wire_port = (__u64)port;
	return 0;
}

/* The client address, on a backend's first read: Port.raddr. */
static __always_inline void wire_client_addr(struct pgv_wire_event *record,
					     struct pgv_backend *backend,
					     const struct pg_layout *layout)
{
	record->client_addr_len = 0;
	if (backend->wire_reads || !backend->wire_port || !layout)
		return;
	if (bpf_probe_read_user(record->client_addr,
				sizeof(record->client_addr),
				(void *)backend->wire_port + layout->port_raddr))
		return;
	record->client_addr_len = pgv_read_u32((void *)backend->wire_port +
					       layout->port_raddr_len);
}

/* Send chunk 'i' of a read of 'total' bytes; returns 0 when none is left. */
static __always_inline int wire_send_chunk(struct pgv_wire_event *record,
					   struct pgv_backend *backend,
					   __u32 i, __u32 total)
{
	__u32 offset = i * PGV_WIRE_CHUNK;
	__u64 len;

	if (offset >= total)
		return 0;
	pgv_fill_header(&record->hdr, PGV_EV_WIRE, backend);
	record->offset = offset;
	len = total - offset;
	/*
	 * The verifier needs the copy's size bounded in the register passed:
	 * as a __u32, clang clamped one copy of the length and passed
	 * another, unbounded one; 64 bits wide and behind a barrier, the
	 * clamp lands on the register used.
	 */
	asm volatile("" : "+r"(len));
	if (len > PGV_WIRE_CHUNK)
		len = PGV_WIRE_CHUNK;
	record->captured = len;
	if (bpf_probe_read_user(record->data, len,
				(void *)backend->wire_buf + offset)) {
		record->hdr.flags |= PGV_F_READ_FAILED;
		record->captured = 0;
		pgv_count_drop(PGV_DROP_READ_FAILED);
		len = 0;
	}
	pgv_send(record, PGV_WIRE_FIXED + len);
	record->client_addr_len = 0;
	return 1;
}

static __always_inline int wire_read_done(struct pt_regs *ctx, long ret)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pgv_backend *backend = bpf_map_lookup_elem(&backends, &pid);
	struct pgv_wire_event *record;
	__u32 i;

	if (!backend || !backend->wire_buf || ret <= 0)
		return 0;
	record = pgv_scratch(0);
	if (!record)
		return 0;
	record->read_len = ret > 0x7fffffff ? 0x7fffffff : (__u32)ret;
	wire_client_addr(record, backend, pgv_layout(ctx));
	for (i = 0; i < PGV_WIRE_CHUNKS; i++)
		if (!wire_send_chunk(record, backend, i, record->read_len))
			break;
	if (record->read_len > PGV_WIRE_CHUNKS * PGV_WIRE_CHUNK)
		pgv_count_drop(PGV_DROP_WIRE_TRUNCATED);
	if (backend->wire_reads < 0xffffffff)
		backend->wire_reads++;
	backend->wire_buf = 0;
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(wire_read_return, long ret)
{
	if (pgv_foreign())
		return 0;
	return wire_read_done(ctx, ret);
}
