// libFuzzer target: the configuration loader, on any text: it must answer
// a config or errors, never crash.
#include <string>

#include "conf/config.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto loaded = relayguard::load_config_text(text, "fuzz.toml");
    if (loaded.config) (void)relayguard::render_config(*loaded.config);
    return 0;
}
