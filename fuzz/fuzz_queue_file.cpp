// libFuzzer target: the queue-file reader, on files as a torn write or a
// hostile local user could leave them.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "delivery/queue/queue_file.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    static const std::string path = "/tmp/relayguard-fuzz-queue-" + std::to_string(::getpid());
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    auto m = relayguard::read_queue_file(path, true);
    if (m) {
        for (const auto& r : m->recipients) (void)relayguard::notify_wants(r, "DELAY");
    }
    return 0;
}
