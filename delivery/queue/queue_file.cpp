// Queue files; see the header for the format's guarantees.
//
//   RGQ1
//   id 0018f3c2a1b2c-4f2a91
//   arrival 1732312345678
//   from sender@example.org
//   ret HDRS                         (RFC 3461, when given)
//   envid QQ314159                   (RFC 3461, when given)
//   warned N                         <- rewritten in place to Y
//   rcpt P user@example.net          <- the P is rewritten in place
//   notify FAILURE,DELAY             (of the rcpt above, when given)
//   orcpt rfc822;user@example.net    (of the rcpt above, when given)
//   size 1234
//   (empty line)
//   <size bytes of content>
//   END
#include "delivery/queue/queue_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <cstdio>
#include <random>

#include "common/base/text_codec.h"
#include "common/base/unique_fd.h"

namespace relayguard {

namespace {

constexpr std::string_view magic = "RGQ1\n";
constexpr std::string_view trailer = "\nEND\n";



}  // namespace

std::string new_queue_id(TimePoint now) {
    thread_local std::mt19937 random{std::random_device{}()};
    char buf[40];
    std::snprintf(buf, sizeof buf, "%011llx-%06x", static_cast<unsigned long long>(now.time_since_epoch().count()),
                  static_cast<unsigned>(random() & 0xffffff));
    return buf;
}

bool storable_address(std::string_view address) {
    if (address.size() > 1024) return false;
    for (char c : address) {
        if (c == '\n' || c == '\r' || c == '\0') return false;
    }
    return true;
}

namespace {

std::string serialize_header(const QueuedMessage& m) {
    std::string header(magic);
    header += "id " + m.id + "\n";
    header += "arrival " + std::to_string(m.arrival.time_since_epoch().count()) + "\n";
    header += "from " + m.sender + "\n";
    if (!m.ret.empty()) header += "ret " + m.ret + "\n";
    if (!m.envid.empty()) header += "envid " + m.envid + "\n";
    header += m.warned ? "warned Y\n" : "warned N\n";
    if (m.submitter_uid) header += "uid " + std::to_string(*m.submitter_uid) + "\n";
    for (const auto& r : m.recipients) {
        header += std::string("rcpt ") + static_cast<char>(r.state) + " " + r.address + "\n";
        if (!r.notify.empty()) header += "notify " + r.notify + "\n";
        if (!r.orcpt.empty()) header += "orcpt " + r.orcpt + "\n";
    }
    header += "size " + std::to_string(m.content.size()) + "\n\n";
    return header;
}

// Writes the message to `staging`, fsyncs it, renames it to `final_path`
// and fsyncs `final_dir`: wholly there or not at all. The file gets `mode`
// whatever the umask, and the owner (for root) and group of `owner_dir`.
Result<std::string> write_durably(const QueuedMessage& m, const std::string& staging, const std::string& final_path,
                                  const std::string& final_dir, mode_t mode, const std::string& owner_dir) {
    using R = Result<std::string>;
    UniqueFd fd(::open(staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd) return R::failure("create " + staging + ": " + std::strerror(errno));
    auto fail = [&](const std::string& what) {
        std::string why = std::strerror(errno);
        ::unlink(staging.c_str());
        return R::failure(what + " " + staging + ": " + why);
    };
    // Queued by root (relayguard-sendmail from cron, queue bounce): the file
    // must belong to the queue's owner, or the relay client could not read it.
    struct stat dir {};
    if (::geteuid() == 0 && ::stat(owner_dir.c_str(), &dir) == 0 && dir.st_uid != 0) {
        if (::fchown(fd.get(), dir.st_uid, dir.st_gid) != 0) return fail("chown");
    }
    if (::fchmod(fd.get(), mode) != 0) return fail("chmod");
    bool ok = write_all(fd.get(), serialize_header(m)) && write_all(fd.get(), m.content) &&
              write_all(fd.get(), trailer) && ::fsync(fd.get()) == 0;
    // The next attempt is due at once: the mtime says so.
    timespec times[2] = {{0, UTIME_OMIT}, {m.arrival.time_since_epoch().count() / 1000,
                                           (m.arrival.time_since_epoch().count() % 1000) * 1'000'000}};
    ok = ok && ::futimens(fd.get(), times) == 0;
    if (!ok) return fail("write");
    if (::rename(staging.c_str(), final_path.c_str()) != 0) {
        std::string why = std::strerror(errno);
        ::unlink(staging.c_str());
        return R::failure("rename into " + final_path + ": " + why);
    }
    if (sync_directory(final_dir)) return final_path;
    // A submitter may write into incoming/ but not read it, so cannot open
    // it to fsync it: the whole file system is synced instead, which makes
    // the rename durable too (dearer, but submissions are few).
    if (errno == EACCES && ::syncfs(fd.get()) == 0) return final_path;
    return R::failure("fsync " + final_dir + ": " + std::strerror(errno));
}

}  // namespace

Result<std::string> write_queue_file(const std::string& queue_dir, const QueuedMessage& m) {
    return write_durably(m, queue_dir + "/tmp/" + m.id, queue_dir + "/active/" + m.id, queue_dir + "/active", 0600,
                         queue_dir + "/active");
}

Result<std::string> drop_into_incoming(const std::string& queue_dir, const QueuedMessage& m) {
    std::string incoming = queue_dir + "/incoming";
    // 0640: the relay client reads it through the group incoming/ hands down
    // (setgid); the dot name keeps it from being picked up half-written.
    return write_durably(m, incoming + "/." + m.id, incoming + "/" + m.id, incoming, 0640, incoming);
}

Result<QueuedMessage> read_queue_file(const std::string& path, bool with_content) {
    using R = Result<QueuedMessage>;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return R::failure(std::string("open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return R::failure("stat failed");
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
        if (n <= 0) return R::failure("short read");
        got += static_cast<std::size_t>(n);
    }
    if (data.compare(0, magic.size(), magic) != 0) return R::failure("not a queue file (no RGQ1 header)");
    QueuedMessage m;
    std::size_t pos = magic.size();
    std::optional<std::uint64_t> size;
    bool have_id = false, have_arrival = false, have_from = false;
    while (true) {
        auto nl = data.find('\n', pos);
        if (nl == std::string::npos) return R::failure("header not terminated");
        std::string_view line(data.data() + pos, nl - pos);
        std::size_t line_start = pos;
        pos = nl + 1;
        if (line.empty()) break;
        auto space = line.find(' ');
        std::string_view key = line.substr(0, space);
        std::string_view value = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
        if (key == "id") {
            m.id = value;
            have_id = true;
        } else if (key == "arrival") {
            auto v = parse_whole_number(value);
            if (!v) return R::failure("bad arrival");
            m.arrival = TimePoint(Duration(*v));
            have_arrival = true;
        } else if (key == "from") {
            m.sender = value;
            have_from = true;
        } else if (key == "rcpt") {
            if (value.size() < 3 || value[1] != ' ') return R::failure("bad rcpt record");
            char s = value[0];
            if (s != 'P' && s != 'D' && s != 'F') return R::failure("bad recipient state");
            QueuedRecipient r;
            r.state = static_cast<RecipientState>(s);
            r.address = value.substr(2);
            r.state_offset = static_cast<off_t>(line_start + 5);
            m.recipients.push_back(std::move(r));
        } else if (key == "ret") {
            if (value != "FULL" && value != "HDRS") return R::failure("bad ret record");
            m.ret = value;
        } else if (key == "envid") {
            m.envid = value;
        } else if (key == "warned") {
            if (value != "Y" && value != "N") return R::failure("bad warned record");
            m.warned = value == "Y";
            m.warned_offset = static_cast<off_t>(line_start + 7);
        } else if (key == "notify" || key == "orcpt") {
            if (m.recipients.empty()) return R::failure(std::string(key) + " record before any rcpt");
            (key == "notify" ? m.recipients.back().notify : m.recipients.back().orcpt) = value;
        } else if (key == "uid") {
            auto v = parse_whole_number(value);
            if (!v || *v < 0 || *v > 0xffffffffLL) return R::failure("bad uid record");
            m.submitter_uid = static_cast<std::uint32_t>(*v);
        } else if (key == "size") {
            auto v = parse_whole_number(value);
            if (!v || *v < 0) return R::failure("bad size");
            size = static_cast<std::uint64_t>(*v);
        } else {
            return R::failure("unknown record '" + std::string(key) + "'");
        }
    }
    if (!have_id || !have_arrival || !have_from || !size || m.recipients.empty()) {
        return R::failure("incomplete envelope");
    }
    // The content must be followed by END and nothing else: anything else is torn.
    if (data.size() != pos + *size + trailer.size() || data.compare(pos + *size, trailer.size(), trailer) != 0) {
        return R::failure("no END record after the content (torn write)");
    }
    m.size = *size;
    if (with_content) m.content = data.substr(pos, *size);
    return m;
}

namespace {

// One byte rewritten in place and fsynced, the mtime (the next-attempt
// time) kept across the write.
bool rewrite_byte(const std::string& path, off_t offset, char c) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return false;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return false;
    if (::pwrite(fd.get(), &c, 1, offset) != 1) return false;
    timespec times[2] = {{0, UTIME_OMIT}, st.st_mtim};
    ::futimens(fd.get(), times);
    return ::fdatasync(fd.get()) == 0;
}

}  // namespace

bool mark_recipient(const std::string& path, const QueuedRecipient& r, RecipientState state) {
    return rewrite_byte(path, r.state_offset, static_cast<char>(state));
}

bool mark_warned(const std::string& path, const QueuedMessage& m) {
    // A file from before the record existed cannot hold the mark: it gets
    // no warning rather than one at every attempt.
    return m.warned_offset != 0 && rewrite_byte(path, m.warned_offset, 'Y');
}

bool notify_wants(const QueuedRecipient& r, std::string_view event) {
    if (r.notify.empty()) return event != "SUCCESS";
    std::string_view rest = r.notify;
    while (!rest.empty()) {
        auto comma = rest.find(',');
        if (rest.substr(0, comma) == event) return true;
        rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
    }
    return false;
}

}  // namespace relayguard
