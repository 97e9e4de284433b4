/*
 * nfq-verdict: accepts every packet queued by an `iptables -j NFQUEUE` rule, the NFQUEUE peer
 * the benchmark compares icmpfwd's decisions with. Per-packet verdicts, or with BATCH > 1 one
 * nfq_set_verdict_batch() per BATCH packets (and whenever the socket runs dry).
 * Build: cc -O2 -o nfq-verdict verdict.c -lnetfilter_queue   Run inside a private namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static volatile sig_atomic_t stop = 0;
static int batch = 1;
static unsigned long verdicts = 0, pending = 0;
static uint32_t last_id = 0;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void flush(struct nfq_q_handle *qh) {
  if (pending == 0) return;
  nfq_set_verdict_batch(qh, last_id, NF_ACCEPT);
  verdicts += pending;
  pending = 0;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == NULL) return 0;
  uint32_t id = ntohl(ph->packet_id);
  if (batch <= 1) {
    verdicts++;
    return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
  }
  last_id = id;
  if (++pending >= (unsigned long)batch) flush(qh);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1) batch = atoi(argv[1]);
  /* No SA_RESTART: a signal must interrupt the blocking recv() so the loop sees `stop`. */
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  struct nfq_handle *h = nfq_open();
  if (h == NULL) { perror("nfq_open"); return 1; }
  struct nfq_q_handle *qh = nfq_create_queue(h, 0, &on_packet, NULL);
  if (qh == NULL) { perror("nfq_create_queue"); return 1; }
  /* The verdict needs only the packet id: copy no payload. */
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) { perror("nfq_set_mode"); return 1; }
  nfq_set_queue_maxlen(qh, 65536);
  int fd = nfq_fd(h);
  int on = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on);
  char buf[65536] __attribute__((aligned));
  printf("READY\n");
  fflush(stdout);
  while (!stop) {
    int flags = pending > 0 ? MSG_DONTWAIT : 0;
    int n = recv(fd, buf, sizeof buf, flags);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) { flush(qh); continue; }
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) continue;
      perror("recv");
      break;
    }
    nfq_handle_packet(h, buf, n);
  }
  flush(qh);
  printf("{\"verdicts\":%lu}\n", verdicts);
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
