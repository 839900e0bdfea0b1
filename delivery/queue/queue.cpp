// The queue directory; see the header.
#include "delivery/queue/queue.h"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

namespace relayguard {

namespace {

// Names in `dir`; dot files (being written) only with `dot_files`, never "." and "..".
std::vector<std::string> names_in(const std::string& dir, bool dot_files = false) {
    std::vector<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return out;
    while (dirent* e = ::readdir(d.get())) {
        std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        if (dot_files || name[0] != '.') out.emplace_back(name);
    }
    return out;
}

}  // namespace

Result<std::unique_ptr<Queue>> Queue::open(const std::string& dir, TimePoint now) {
    using R = Result<std::unique_ptr<Queue>>;
    // The queue directory's group (relayguard, as packaged) may submit with
    // relayguard-sendmail: it may pass the top (0750) and drop files into
    // incoming/ (like Postfix's maildrop: write and search only, sticky so no
    // member removes another's file, setgid so every file gets the group the
    // relay client reads it by). The rest is the relay client's alone.
    struct Area {
        const char* sub;
        mode_t mode;
    };
    struct stat top {};
    for (Area a : {Area{"", 0750}, Area{"/tmp", 0700}, Area{"/active", 0700}, Area{"/corrupt", 0700},
                   Area{"/incoming", 03730}}) {
        std::string path = dir + a.sub;
        std::error_code ec;
        std::filesystem::create_directories(path, ec);
        if (ec) return R::failure("create " + path + ": " + ec.message());
        if (*a.sub == '\0' && ::stat(path.c_str(), &top) != 0) return R::failure("stat " + path + ": " + std::strerror(errno));
        if (std::string_view(a.sub) == "/incoming" && ::chown(path.c_str(), static_cast<uid_t>(-1), top.st_gid) != 0) {
            spdlog::warn("queue: cannot give {} the group of {} ({}); relayguard-sendmail works for root only",
                         path, dir, std::strerror(errno));
        }
        ::chmod(path.c_str(), a.mode);
    }
    // Never acknowledged: the sender still has them. In incoming/ only dot
    // files an hour old: a relayguard-sendmail may be writing one right now.
    for (const auto& name : names_in(dir + "/tmp")) ::unlink((dir + "/tmp/" + name).c_str());
    for (const auto& name : names_in(dir + "/incoming", true)) {
        struct stat st {};
        std::string path = dir + "/incoming/" + name;
        auto hour_ago = std::chrono::duration_cast<std::chrono::seconds>((now - std::chrono::hours(1)).time_since_epoch());
        if (name[0] == '.' && ::stat(path.c_str(), &st) == 0 && st.st_mtime < hour_ago.count()) {
            ::unlink(path.c_str());
        }
    }
    std::size_t kept = 0, moved = 0, finished = 0;
    for (const auto& name : names_in(dir + "/active")) {
        std::string path = dir + "/active/" + name;
        auto m = read_queue_file(path, false);
        if (!m) {
            spdlog::error("queue {}: unreadable ({}); moved to corrupt/", name, m.error());
            ::rename(path.c_str(), (dir + "/corrupt/" + name).c_str());
            ++moved;
            continue;
        }
        bool pending = std::any_of(m->recipients.begin(), m->recipients.end(),
                                   [](const QueuedRecipient& r) { return r.state == RecipientState::pending; });
        if (!pending) {
            ::unlink(path.c_str());
            ++finished;
            continue;
        }
        ++kept;
    }
    sync_directory(dir + "/active");
    spdlog::info("queue {}: {} messages to deliver, {} finished ones removed, {} unreadable moved to corrupt/", dir,
                 kept, finished, moved);
    auto q = std::make_unique<Queue>(dir);
    q->size_ = kept;
    return q;
}

Result<std::string> Queue::enqueue(QueuedMessage m, TimePoint now) {
    if (m.id.empty()) m.id = new_queue_id(now);
    if (m.arrival == TimePoint{}) m.arrival = now;
    auto written = write_queue_file(dir_, m);
    if (!written) return Result<std::string>::failure(written.error());
    ++size_;
    return m.id;
}

Result<std::string> Queue::enqueue(const std::string& sender, const std::vector<std::string>& rcpts,
                                   const std::string& content, TimePoint now) {
    QueuedMessage m;
    m.sender = sender;
    for (const auto& r : rcpts) m.recipients.push_back(QueuedRecipient{r, RecipientState::pending, 0, "", ""});
    m.content = content;
    return enqueue(std::move(m), now);
}

std::vector<std::string> Queue::pickup() {
    std::vector<std::string> taken;
    std::string incoming = dir_ + "/incoming/";
    for (const auto& name : names_in(dir_ + "/incoming")) {
        std::string path = incoming + name;
        auto m = read_queue_file(path, true);
        if (!m || m->id != name) {
            spdlog::error("queue: incoming/{} unreadable ({}); moved to corrupt/", name,
                          m ? "its id is " + m->id : m.error());
            ::rename(path.c_str(), (dir_ + "/corrupt/" + name).c_str());
            continue;
        }
        // A crash between the copy and the unlink leaves both: the copy in
        // active/ may already be partly delivered, so it wins.
        struct stat st {};
        if (::stat((dir_ + "/active/" + name).c_str(), &st) != 0) {
            auto written = write_queue_file(dir_, *m);
            if (!written) {
                spdlog::error("queue: cannot take incoming/{}: {}; trying again", name, written.error());
                continue;
            }
            ++size_;
            taken.push_back(name);
        }
        ::unlink(path.c_str());
        sync_directory(dir_ + "/incoming");
        // As the SMTP intake's line, with who submitted it.
        spdlog::info("{}: queued from=<{}> nrcpt={} size={} uid={} via=relayguard-sendmail", name, m->sender,
                     m->recipients.size(), m->content.size(),
                     m->submitter_uid ? std::to_string(*m->submitter_uid) : std::string("unknown"));
    }
    return taken;
}

std::optional<std::uint64_t> Queue::free_bytes() const {
    struct statvfs fs {};
    if (::statvfs(dir_.c_str(), &fs) != 0) return std::nullopt;
    return static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
}

std::vector<QueueEntry> Queue::scan() {
    std::vector<QueueEntry> out;
    for (const auto& name : names_in(dir_ + "/active")) {
        struct stat st {};
        if (::stat((dir_ + "/active/" + name).c_str(), &st) != 0) continue;
        auto mtime = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
        out.push_back(QueueEntry{name, TimePoint(std::chrono::duration_cast<Duration>(mtime))});
    }
    std::sort(out.begin(), out.end(), [](const QueueEntry& a, const QueueEntry& b) { return a.id < b.id; });
    size_ = out.size();
    return out;
}

}  // namespace relayguard
