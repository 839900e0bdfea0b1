// The floor of the milter protocol: a milter built with the same libmilter
// as relayguard, with the callbacks relayguard registers and the same
// negotiation (the same protocol steps, and the same short macro lists, so
// that the MTA sends it what it sends relayguard), each callback answering
// "continue" at once. What a milter costs beyond this is its own work.
//
//   null_milter inet:PORT@127.0.0.1
#include <libmilter/mfapi.h>

#include <cstdio>

namespace {
sfsistat go_on(SMFICTX*) { return SMFIS_CONTINUE; }
sfsistat on_connect(SMFICTX*, char*, _SOCK_ADDR*) { return SMFIS_CONTINUE; }
sfsistat on_text(SMFICTX*, char*) { return SMFIS_CONTINUE; }
sfsistat on_args(SMFICTX*, char**) { return SMFIS_CONTINUE; }
sfsistat on_header(SMFICTX*, char*, char*) { return SMFIS_CONTINUE; }
sfsistat on_body(SMFICTX*, unsigned char*, size_t) { return SMFIS_CONTINUE; }
sfsistat on_unknown(SMFICTX*, const char*) { return SMFIS_CONTINUE; }
sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
    *pf0 = f0 & SMFIF_SETSYMLIST;
    *pf1 = f1 & SMFIP_RCPT_REJ;
    *pf2 = 0;
    *pf3 = 0;
    if (*pf0 & SMFIF_SETSYMLIST) {
        smfi_setsymlist(ctx, SMFIM_CONNECT, const_cast<char*>("{client_addr} {client_name} {client_ptr} {daemon_name} j _"));
        smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("{auth_authen} {auth_type} {mail_addr} i"));
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("{rcpt_mailer} {rcpt_host} {rcpt_addr} i"));
        smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    return SMFIS_CONTINUE;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: null_milter inet:PORT@127.0.0.1\n");
        return 64;
    }
    smfiDesc desc{};
    desc.xxfi_name = const_cast<char*>("null");
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_text;
    desc.xxfi_envfrom = on_args;
    desc.xxfi_envrcpt = on_args;
    desc.xxfi_header = on_header;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = go_on;
    desc.xxfi_abort = go_on;
    desc.xxfi_close = go_on;
    desc.xxfi_unknown = on_unknown;
    desc.xxfi_negotiate = on_negotiate;
    desc.xxfi_flags = SMFIF_SETSYMLIST;
    if (smfi_register(desc) != MI_SUCCESS || smfi_setconn(argv[1]) != MI_SUCCESS) return 1;
    smfi_setbacklog(1024);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
