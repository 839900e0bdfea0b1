// Takes mail in over SMTP or LMTP on loopback, from Postfix (as relayhost or
// a transport) or an appliance, and answers 250 only once the message is in
// the queue on disk, fsynced. A full queue answers 452 at MAIL, a message
// over the size limit 552, so the sender keeps its mail. DSN (RFC 3461) is
// offered: NOTIFY, ORCPT, RET and ENVID are kept with the message.
// Over TCP only the clients in delivery.allowed_clients are served (default
// loopback); anyone else is answered 554 5.7.1 at connect, so a listen on a
// public address is not an open relay. A unix socket's own mode guards it.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "common/base/unique_fd.h"
#include "delivery/delivery_settings.h"
#include "delivery/queue/queue_file.h"

namespace relayguard {

class IntakeServer {
public:
    // Writes one message durably; answers its queue id, or why not.
    // Envelope (with RFC 3461 DSN parameters) and content are filled in.
    using Enqueue = std::function<Result<std::string>(QueuedMessage message)>;
    // Whether the queue can take a message of `declared_size` bytes (0 when
    // the client gave no SIZE); asked at MAIL.
    using QueueFull = std::function<bool(std::uint64_t declared_size)>;
    // `clock` dates the Received: header.
    IntakeServer(std::uint64_t max_message_size, std::vector<IpGroup> allowed_clients, Enqueue enqueue, QueueFull full,
                 const Clock& clock);
    ~IntakeServer();

    void start(UniqueFd listener);
    void stop();

private:
    void accept_loop();
    void serve(int fd, std::string peer);
    // The per-verb handlers of serve()'s command table.
    struct Session;
    bool on_ehlo(Session& s, const std::string& line);  // and LHLO
    bool on_helo(Session& s, const std::string& line);
    bool on_mail(Session& s, const std::string& line);
    bool on_rcpt(Session& s, const std::string& line);
    bool on_data(Session& s, const std::string& line);
    bool on_rset(Session& s, const std::string& line);
    bool on_noop(Session& s, const std::string& line);
    bool on_quit(Session& s, const std::string& line);
    void queue_message(Session& s, const std::string& content);

    const std::uint64_t max_size_;
    const std::vector<IpGroup> allowed_clients_;
    Enqueue enqueue_;
    QueueFull full_;
    const Clock& clock_;
    UniqueFd listener_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> active_{0};
    std::thread acceptor_;
};

}  // namespace relayguard
