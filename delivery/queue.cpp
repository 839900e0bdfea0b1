// The queue directory; see the header.
#include "delivery/queue.h"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace relayguard {

namespace {

std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return out;
    while (dirent* e = ::readdir(d.get())) {
        if (e->d_name[0] != '.') out.emplace_back(e->d_name);
    }
    return out;
}

}  // namespace

Result<std::unique_ptr<Queue>> Queue::open(const std::string& dir) {
    using R = Result<std::unique_ptr<Queue>>;
    for (const char* sub : {"", "/tmp", "/active", "/corrupt"}) {
        std::error_code ec;
        std::filesystem::create_directories(dir + sub, ec);
        if (ec) return R::failure("create " + dir + sub + ": " + ec.message());
        ::chmod((dir + sub).c_str(), 0700);
    }
    // Never acknowledged: the sender still has them.
    for (const auto& name : names_in(dir + "/tmp")) ::unlink((dir + "/tmp/" + name).c_str());
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
