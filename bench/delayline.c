/* bench-delayline: a fixed delay for the packets that arrive over a kernel link, for the benchmarks.
 *
 * Usage: bench-delayline QUEUE DELAY_MS
 *
 * The kernel has no sch_netem here, so the delay is held in user space while the packets stay
 * in the kernel: an iptables rule sends the packets that arrive over the veth in the far namespace
 * to NFQUEUE number QUEUE (INPUT -i VETH), and this program binds that queue, notes when each
 * packet arrived and lets it go (NF_ACCEPT) DELAY_MS later. TCP runs end to end between the two
 * namespaces, over the veth, with its own windows and segment sizes; only the arrival of each
 * packet is late, as on a long link. The whole round trip is put on the one direction: a packet
 * held on its sender's side (OUTPUT) still counts against that socket's TCP small queues, which
 * then lets only a few packets out at a time (1 MB/s at 10 ms instead of 120), whereas a packet
 * that crossed the veth into another namespace has been orphaned from its socket. Only metadata
 * crosses to user space (NFQNL_COPY_META), GSO packets are queued whole, and since every packet
 * waits the same time they leave in the order they came, so one batch verdict releases all that
 * are due.
 *
 * It speaks nfnetlink_queue directly (no library), runs until SIGTERM or SIGINT, then lets every
 * held packet go and prints what it did on stderr. Run it in the network namespace of the queue
 * (nsenter --net=...), as root.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_SIZE (1u << 20) /* packets held at once; the queue's own limit is QUEUE_MAXLEN */
#define QUEUE_MAXLEN 65536
#define RCVBUF_BYTES (16 << 20)

struct held {
  uint32_t id;
  int64_t due_ns;
};

static struct held ring[RING_SIZE];
static size_t head, tail; /* held packets are ring[head..tail) */
static volatile sig_atomic_t stop;
static uint16_t queue_num;

static void on_signal(int sig)
{
  (void)sig;
  stop = 1;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
  fprintf(stderr, "bench-delayline: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* A message under construction: nlmsghdr, nfgenmsg, then attributes. */
struct msg {
  union {
    struct nlmsghdr nh;
    char buf[256];
  } u;
};

static void msg_init(struct msg *m, uint16_t type, uint16_t flags)
{
  memset(m, 0, sizeof *m);
  m->u.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
  m->u.nh.nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
  m->u.nh.nlmsg_flags = NLM_F_REQUEST | flags;
  struct nfgenmsg *g = NLMSG_DATA(&m->u.nh);
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(queue_num);
}

static void msg_attr(struct msg *m, uint16_t type, const void *data, size_t len)
{
  struct nlattr *a = (struct nlattr *)(m->u.buf + NLMSG_ALIGN(m->u.nh.nlmsg_len));
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + len;
  memcpy((char *)a + NLA_HDRLEN, data, len);
  m->u.nh.nlmsg_len = NLMSG_ALIGN(m->u.nh.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void msg_send(int fd, struct msg *m)
{
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  if (sendto(fd, m->u.buf, m->u.nh.nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0)
    die("sending to nfnetlink_queue");
}

/* Sends a configuration message and waits for its acknowledgement. */
static void configure(int fd, struct msg *m, const char *what)
{
  m->u.nh.nlmsg_seq = (uint32_t)now_ns();
  msg_send(fd, m);
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0)
      die(what);
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != m->u.nh.nlmsg_seq)
        continue;
      struct nlmsgerr *e = NLMSG_DATA(h);
      if (e->error == 0)
        return;
      errno = -e->error;
      die(what);
    }
  }
}

static void release_upto(int fd, uint32_t id)
{
  struct msg m;
  msg_init(&m, NFQNL_MSG_VERDICT_BATCH, 0);
  struct nfqnl_msg_verdict_hdr v = {.verdict = htonl(NF_ACCEPT), .id = htonl(id)};
  msg_attr(&m, NFQA_VERDICT_HDR, &v, sizeof v);
  msg_send(fd, &m);
}

/* Notes every packet message in BUF. Returns how many packets it held. */
static size_t take_packets(char *buf, ssize_t n, int64_t due_ns)
{
  size_t taken = 0;
  for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
      continue;
    size_t off = NLMSG_ALIGN(sizeof(struct nfgenmsg));
    size_t end = h->nlmsg_len - NLMSG_HDRLEN;
    char *base = NLMSG_DATA(h);
    while (off + NLA_HDRLEN <= end) {
      struct nlattr *a = (struct nlattr *)(base + off);
      if (a->nla_len < NLA_HDRLEN || off + a->nla_len > end)
        break;
      if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR &&
          a->nla_len >= NLA_HDRLEN + sizeof(struct nfqnl_msg_packet_hdr)) {
        struct nfqnl_msg_packet_hdr ph;
        memcpy(&ph, (char *)a + NLA_HDRLEN, sizeof ph);
        if (tail - head == RING_SIZE) {
          fprintf(stderr, "bench-delayline: more than %u packets held\n", RING_SIZE);
          exit(1);
        }
        ring[tail % RING_SIZE] = (struct held){.id = ntohl(ph.packet_id), .due_ns = due_ns};
        tail++;
        taken++;
        break;
      }
      off += NLA_ALIGN(a->nla_len);
    }
  }
  return taken;
}

/* QUEUE and DELAY_MS from the command line; exits 2 with the reason when they are bad. */
static int64_t parse_args(int argc, char **argv, double *ms)
{
  char *end = NULL;
  if (argc != 3) {
    fprintf(stderr, "usage: bench-delayline QUEUE DELAY_MS\n");
    exit(2);
  }
  long q = strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || q < 0 || q > 65535) {
    fprintf(stderr, "bench-delayline: QUEUE \"%s\" is not a queue number (0-65535)\n", argv[1]);
    exit(2);
  }
  *ms = strtod(argv[2], &end);
  if (*argv[2] == '\0' || *end != '\0' || !(*ms >= 0 && *ms <= 10000)) {
    fprintf(stderr, "bench-delayline: DELAY_MS \"%s\" is not a delay in ms (0-10000)\n", argv[2]);
    exit(2);
  }
  queue_num = (uint16_t)q;
  return (int64_t)(*ms * 1e6);
}

/* A netlink socket bound to the queue, which hands over each packet's metadata only. */
static int open_queue(void)
{
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0)
    die("socket(NETLINK_NETFILTER)");
  int size = RCVBUF_BYTES, one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0)
    die("bind(netlink)");

  struct msg m;
  msg_init(&m, NFQNL_MSG_CONFIG, NLM_F_ACK);
  struct nfqnl_msg_config_cmd cmd = {.command = NFQNL_CFG_CMD_BIND};
  msg_attr(&m, NFQA_CFG_CMD, &cmd, sizeof cmd);
  configure(fd, &m, "binding the queue (is another program bound to it?)");

  msg_init(&m, NFQNL_MSG_CONFIG, NLM_F_ACK);
  struct nfqnl_msg_config_params params = {.copy_range = htonl(0), .copy_mode = NFQNL_COPY_META};
  msg_attr(&m, NFQA_CFG_PARAMS, &params, sizeof params);
  uint32_t maxlen = htonl(QUEUE_MAXLEN);
  msg_attr(&m, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
  uint32_t flags = htonl(NFQA_CFG_F_GSO);
  msg_attr(&m, NFQA_CFG_MASK, &flags, sizeof flags);
  msg_attr(&m, NFQA_CFG_FLAGS, &flags, sizeof flags);
  configure(fd, &m, "configuring the queue");
  return fd;
}

/* Lets go of every packet whose time has come (one verdict for the last of them) and returns how
 * long to wait for the next one. */
static struct timespec release_due(int fd, int64_t now)
{
  size_t last = head;
  while (last < tail && ring[last % RING_SIZE].due_ns <= now)
    last++;
  if (last > head) {
    release_upto(fd, ring[(last - 1) % RING_SIZE].id);
    head = last;
  }
  struct timespec wait = {.tv_sec = 1};
  if (head < tail) {
    int64_t left = ring[head % RING_SIZE].due_ns - now;
    if (left < 0)
      left = 0;
    wait = (struct timespec){.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
  }
  return wait;
}

int main(int argc, char **argv)
{
  double ms;
  int64_t delay_ns = parse_args(argc, argv, &ms);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int fd = open_queue();
  fprintf(stderr, "bench-delayline: queue %u, delay %.3f ms\n", queue_num, ms);

  static char buf[1 << 16];
  uint64_t packets = 0;
  size_t max_held = 0;
  while (!stop) {
    struct timespec wait = release_due(fd, now_ns());
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = ppoll(&pfd, 1, &wait, NULL);
    if (r < 0 && errno != EINTR)
      die("ppoll");
    if (r <= 0)
      continue;
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
          break;
        if (errno == ENOBUFS) /* notifications lost; their packets go with the next verdict */
          continue;
        die("recv");
      }
      packets += take_packets(buf, n, now_ns() + delay_ns);
      if (tail - head > max_held)
        max_held = tail - head;
    }
  }
  if (tail > head)
    release_upto(fd, ring[(tail - 1) % RING_SIZE].id);
  fprintf(stderr, "bench-delayline: %llu packets delayed, at most %zu held at once\n",
          (unsigned long long)packets, max_held);
  close(fd);
  return 0;
}
