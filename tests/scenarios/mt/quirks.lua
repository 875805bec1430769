-- Protocol corners real MTAs produce: two messages on one connection, a repeated HELO,
-- an abort in the middle of a message, and a header with an 8-bit value.
-- Run: miltertest -D socket=inet:PORT@127.0.0.1 -s quirks.lua
-- Prints "PASS quirks" on success; on failure prints "FAIL quirks: <reason>" and exits non-zero.

local function check(cond, what)
	if not cond then
		error(what, 2)
	end
end

local function ok(result, what)
	check(result == nil, what .. " failed: " .. tostring(result))
end

local function expect_continue(conn, what)
	local reply = mt.getreply(conn)
	check(reply == SMFIR_CONTINUE,
	      what .. ": expected continue, got " .. string.format("%q", string.char(reply)))
end

local function envelope(conn, n)
	ok(mt.macro(conn, SMFIC_MAIL, "i", "QUIRK" .. n), "mt.macro(mail " .. n .. ")")
	ok(mt.mailfrom(conn, "<sender" .. n .. "@example.net>"), "mt.mailfrom " .. n)
	expect_continue(conn, "mailfrom " .. n)
	ok(mt.rcptto(conn, "<rcpt@example.org>"), "mt.rcptto " .. n)
	expect_continue(conn, "rcptto " .. n)
	ok(mt.data(conn), "mt.data " .. n)
	expect_continue(conn, "data " .. n)
end

local function message(conn, n, subject)
	envelope(conn, n)
	ok(mt.header(conn, "From", "sender" .. n .. "@example.net"), "mt.header(From) " .. n)
	ok(mt.header(conn, "Subject", subject), "mt.header(Subject) " .. n)
	ok(mt.eoh(conn), "mt.eoh " .. n)
	expect_continue(conn, "eoh " .. n)
	ok(mt.bodystring(conn, "message " .. n .. "\r\n"), "mt.bodystring " .. n)
	expect_continue(conn, "body " .. n)
	ok(mt.eom(conn), "mt.eom " .. n)
	local reply = mt.getreply(conn)
	check(reply == SMFIR_CONTINUE or reply == SMFIR_ACCEPT,
	      "eom " .. n .. ": got " .. string.format("%q", string.char(reply)))
	check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Status")
	      or mt.eom_check(conn, MT_HDRINSERT, "X-Spam-Status"),
	      "message " .. n .. ": X-Spam-Status was not added")
end

local function main()
	check(socket ~= nil, "pass -D socket=inet:PORT@127.0.0.1")
	mt.set_timeout(30)
	local conn = mt.connect(socket, 40, 0.25)
	check(conn ~= nil, "mt.connect(" .. socket .. ")")
	ok(mt.negotiate(conn, nil, nil, nil), "mt.negotiate")

	ok(mt.conninfo(conn, "client.example.net", "2001:db8::25"), "mt.conninfo (IPv6)")
	expect_continue(conn, "conninfo")

	-- HELO twice (a client that says EHLO again after STARTTLS)
	ok(mt.helo(conn, "first.example.net"), "mt.helo 1")
	expect_continue(conn, "helo 1")
	ok(mt.helo(conn, "second.example.net"), "mt.helo 2")
	expect_continue(conn, "helo 2")

	-- a message aborted half way: envelope and one header, then ABORT
	envelope(conn, 0)
	ok(mt.header(conn, "Subject", "never finished"), "mt.header(aborted)")
	ok(mt.abort(conn), "mt.abort")

	-- two complete messages on the same connection; the second has an 8-bit header value
	message(conn, 1, "first message")
	message(conn, 2, "caf\xc3\xa9 \xe4\xf6\xfc raw 8-bit")

	-- Postfix sends ABORT after a completed message too; it must be ignored
	ok(mt.abort(conn), "mt.abort after eom")

	ok(mt.disconnect(conn), "mt.disconnect")
end

local success, err = pcall(main)
if not success then
	mt.echo("FAIL quirks: " .. tostring(err))
	error(err)
end
mt.echo("PASS quirks")
