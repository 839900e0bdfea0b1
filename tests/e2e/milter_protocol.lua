-- miltertest script: drives relayguard's milter at the protocol level, with
-- no MTA, as Postfix would: macros, a relay refusal with its reply code, a
-- recipient the MTA refused itself (SMFIP_RCPT_REJ) and a local recipient.
-- The milter address comes from the environment (RG_MILTER).
local addr = os.getenv("RG_MILTER")
local conn = mt.connect(addr)
if conn == nil then error("cannot connect to " .. addr) end

mt.macro(conn, SMFIC_CONNECT, "{client_addr}", "192.0.2.77", "{daemon_name}", "miltertest")
if mt.conninfo(conn, "client.example.org", "192.0.2.77") ~= nil then error("conninfo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect was not accepted") end
if mt.helo(conn, "client.example.org") ~= nil then error("helo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("helo was not accepted") end
if mt.mailfrom(conn, "<sender@example.org>") ~= nil then error("mail") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail was not accepted") end

-- Relaying from an unknown client: a reply code, not a plain reject.
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "smtp")
if mt.rcptto(conn, "<victim@foreign.example>") ~= nil then error("rcpt foreign") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("relay to a foreign domain was not refused") end

-- A local recipient passes.
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "local")
if mt.rcptto(conn, "<user1@example.test>") ~= nil then error("rcpt local") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("local recipient was refused") end

-- Two recipients the MTA refused as unknown reach the harvest guard
-- (limit 2 in the test config): afterwards the client is blocked.
for i = 1, 2 do
  mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "error", "{rcpt_host}", "5.1.1")
  if mt.rcptto(conn, "<guess" .. i .. "@example.test>") ~= nil then error("rcpt unknown") end
end
mt.macro(conn, SMFIC_RCPT, "{rcpt_mailer}", "local")
if mt.rcptto(conn, "<user1@example.test>") ~= nil then error("rcpt after harvest") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("client not blocked after 2 unknown recipients") end

mt.disconnect(conn)
print("milter protocol checks passed")
