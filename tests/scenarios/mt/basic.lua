-- One ordinary message through the milter, as Sendmail would send it.
-- Run: miltertest -D socket=inet:PORT@127.0.0.1 -s basic.lua
-- Prints "PASS basic" on success; on failure prints "FAIL basic: <reason>" and exits non-zero.

local function check(cond, what)
	if not cond then
		error(what, 2)
	end
end

local function ok(result, what)
	-- mt.* functions return nil on success or an error string
	check(result == nil, what .. " failed: " .. tostring(result))
end

local function expect_continue(conn, what)
	local reply = mt.getreply(conn)
	check(reply == SMFIR_CONTINUE,
	      what .. ": expected continue, got " .. string.format("%q", string.char(reply)))
end

local function main()
	check(socket ~= nil, "pass -D socket=inet:PORT@127.0.0.1")
	mt.set_timeout(30)
	local conn = mt.connect(socket, 40, 0.25)
	check(conn ~= nil, "mt.connect(" .. socket .. ")")

	ok(mt.negotiate(conn, nil, nil, nil), "mt.negotiate")
	check(mt.test_action(conn, SMFIF_ADDHDRS), "SMFIF_ADDHDRS not negotiated")

	ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org", "{daemon_name}", "MTA",
	            "_", "client.example.net [192.0.2.1]"), "mt.macro(connect)")
	ok(mt.conninfo(conn, "client.example.net", "192.0.2.1"), "mt.conninfo")
	expect_continue(conn, "conninfo")

	ok(mt.helo(conn, "client.example.net"), "mt.helo")
	expect_continue(conn, "helo")

	ok(mt.macro(conn, SMFIC_MAIL, "i", "4AbCdE1234", "{mail_addr}", "sender@example.net"),
	   "mt.macro(mail)")
	ok(mt.mailfrom(conn, "<sender@example.net>", "SIZE=512"), "mt.mailfrom")
	expect_continue(conn, "mailfrom")

	ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "rcpt@example.org", "{rcpt_mailer}", "local"),
	   "mt.macro(rcpt)")
	ok(mt.rcptto(conn, "<rcpt@example.org>"), "mt.rcptto")
	expect_continue(conn, "rcptto")

	ok(mt.data(conn), "mt.data")
	expect_continue(conn, "data")

	ok(mt.header(conn, "From", "Sender <sender@example.net>"), "mt.header(From)")
	ok(mt.header(conn, "To", "rcpt@example.org"), "mt.header(To)")
	ok(mt.header(conn, "Subject", "basic miltertest message"), "mt.header(Subject)")
	ok(mt.header(conn, "Message-ID", "<basic.1@example.net>"), "mt.header(Message-ID)")
	expect_continue(conn, "headers")
	ok(mt.eoh(conn), "mt.eoh")
	expect_continue(conn, "eoh")

	ok(mt.bodystring(conn, "Hello,\r\n\r\nthis is an ordinary test message.\r\n"), "mt.bodystring")
	expect_continue(conn, "body")

	ok(mt.macro(conn, string.byte("E"), "{msg_id}", "<basic.1@example.net>"), "mt.macro(eom)")
	ok(mt.eom(conn), "mt.eom")
	local reply = mt.getreply(conn)
	check(reply == SMFIR_CONTINUE or reply == SMFIR_ACCEPT,
	      "eom: expected continue or accept, got " .. string.format("%q", string.char(reply)))
	check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Status")
	      or mt.eom_check(conn, MT_HDRINSERT, "X-Spam-Status"),
	      "X-Spam-Status was not added at end of message")
	local status = mt.getheader(conn, "X-Spam-Status", 0)
	if status ~= nil then
		mt.echo("X-Spam-Status:" .. status)
	end

	ok(mt.disconnect(conn), "mt.disconnect")
end

local success, err = pcall(main)
if not success then
	mt.echo("FAIL basic: " .. tostring(err))
	error(err)
end
mt.echo("PASS basic")
