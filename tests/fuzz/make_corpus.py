#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (tests/fuzz/corpus/{request,response}/).

Each seed is a control byte (see fuzz_support.hpp: bits 0-1 the largest read, 1/7/64/4096
bytes; bits 2-5 the seed of the read sizes; bit 7 tight limits for requests, HEAD for
responses; bit 6 tight limits for responses) and then what the peer sends. Rerun after editing. Inputs the fuzzers found
that showed a defect are added here as seeds named found_*, so every run replays them.
"""
import pathlib

WHOLE, SEVEN, BYTE, SIXTY_FOUR = 0x03, 0x05, 0x00, 0x0a
TIGHT = HEAD = 0x80
TIGHT_RESPONSE = 0x40
HOST = b"Host: example.com\r\n"


def req(head, body=b""):
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


REQUESTS = {
    "get": (WHOLE, req(b"GET / HTTP/1.1\nHost: example.com\nUser-Agent: seed\nAccept: */*\n")),
    "get_bytewise": (BYTE, req(b"GET /a/b?c=d&e HTTP/1.1\nHost: example.com\n")),
    "get_http10": (SEVEN, req(b"GET /index.html HTTP/1.0\n")),
    "http10_keep_alive_pipelined": (SIXTY_FOUR, req(b"GET /1 HTTP/1.0\nConnection: keep-alive\n")
                                    + req(b"GET /2 HTTP/1.0\n")),
    "post_content_length": (SEVEN, req(b"POST /form HTTP/1.1\nHost: a\nContent-Length: 11\n", b"hello world")),
    "content_length_list": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nContent-Length: 3, 3\n", b"abc")),
    "content_length_twice_differs": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nContent-Length: 3\nContent-Length: 4\n",
                                               b"abcd")),
    "chunked_extensions_trailers": (SEVEN, req(
        b"POST /up HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTrailer: X-Sum\n",
        b"5;name=value;q=\"a \\\" b\"\r\nhello\r\n6;ext\r\n world\r\n0;last=1\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n")),
    "chunked_hex_sizes": (SIXTY_FOUR, req(b"PUT /x HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                         b"000A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n")),
    "chunk_size_overflow": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                       b"fffffffffffffffff1\r\nx\r\n0\r\n\r\n")),
    "pipelined_three": (SEVEN, req(b"GET /1 HTTP/1.1\nHost: a\n") +
                        req(b"POST /2 HTTP/1.1\nHost: a\nContent-Length: 2\n", b"ok") +
                        req(b"POST /3 HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nConnection: close\n",
                            b"2\r\nhi\r\n0\r\n\r\n")),
    "cl_then_te": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nContent-Length: 6\nTransfer-Encoding: chunked\n",
                              b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")),
    "te_then_cl": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 6\n",
                              b"0\r\n\r\n")),
    "te_gzip": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n",
                           b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")),
    "te_chunked_identity": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, identity\n",
                                       b"0\r\n\r\n")),
    "te_xchunked": (SEVEN, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: xchunked\n", b"0\r\n\r\n")),
    "te_split_over_two_fields": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n"
                                            b"Transfer-Encoding: chunked\n", b"0\r\n\r\n")),
    "te_http10": (WHOLE, req(b"POST / HTTP/1.0\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n")),
    "obs_fold": (WHOLE, req(b"GET / HTTP/1.1\nHost: a\nX-Folded: one\n  two\n\tthree\n")),
    "duplicate_host": (WHOLE, req(b"GET / HTTP/1.1\nHost: a\nHost: b\n")),
    "no_host": (WHOLE, req(b"GET / HTTP/1.1\nAccept: */*\n")),
    "expect_100_continue": (SEVEN, req(b"POST /big HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 4\n",
                                       b"data")),
    "expect_100_chunked": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nExpect: 100-Continue\n"
                                      b"Transfer-Encoding: chunked\n", b"1\r\nx\r\n0\r\n\r\n")),
    "version_2": (WHOLE, req(b"GET / HTTP/2.0\nHost: a\n")),
    "version_junk": (WHOLE, req(b"GET / HTTP/1.1x\nHost: a\n")),
    "targets_odd_forms": (SIXTY_FOUR, req(b"OPTIONS * HTTP/1.1\nHost: a\n") +
                          req(b"GET http://example.com:8080/p?q HTTP/1.1\nHost: example.com:8080\n") +
                          req(b"CONNECT example.com:443 HTTP/1.1\nHost: example.com:443\n")),
    "upgrade": (WHOLE, req(b"GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n")),
    "connection_list": (WHOLE, req(b"GET / HTTP/1.1\nHost: a\nConnection: keep-alive, close, TE\n") +
                        req(b"GET /after-close HTTP/1.1\nHost: a\n")),
    "bare_lf": (WHOLE, b"GET / HTTP/1.1\nHost: a\n\n"),
    "whitespace_around_values": (WHOLE, req(b"GET / HTTP/1.1\nHost:  a \nX-Empty:\nX-Tab:\tv\t\n")),
    "space_before_colon": (WHOLE, req(b"GET / HTTP/1.1\nHost: a\nX-Bad : v\n")),
    "leading_crlf": (WHOLE, b"\r\n" + req(b"GET / HTTP/1.1\nHost: a\n")),
    "nul_in_value": (WHOLE, req(b"GET / HTTP/1.1\nHost: a\nX-Nul: a\x00b\n")),
    "obs_text": (WHOLE, req(b"GET /caf\xc3\xa9 HTTP/1.1\nHost: a\nX-Latin: caf\xe9\n")),
    "tight_header_over_limit": (TIGHT | SIXTY_FOUR, req(b"GET / HTTP/1.1\nHost: a\nX-Long: " + b"v" * 600 + b"\n")),
    "tight_body_over_limit": (TIGHT | WHOLE, req(b"POST / HTTP/1.1\nHost: a\nContent-Length: 300\n", b"b" * 300)),
    "tight_chunked_over_limit": (TIGHT | SEVEN, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                                    b"100\r\n" + b"c" * 256 + b"\r\n1\r\nd\r\n0\r\n\r\n")),
    "long_chunk_extension": (SIXTY_FOUR, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                             b"1;a=" + b"a" * 3000 + b"\r\nx\r\n0\r\n\r\n")),
    "many_trailers": (SIXTY_FOUR, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                      b"1\r\nx\r\n0\r\n" + b"".join(b"T%d: v\r\n" % i for i in range(200)) + b"\r\n")),
    "tight_endless_chunk_extension": (TIGHT | SIXTY_FOUR, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                                              b"1;a=" + b"a" * 5000)),
    "tight_endless_trailers": (TIGHT | SIXTY_FOUR, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                                       b"1\r\nx\r\n0\r\n" + b"X-T: " + b"t" * 5000)),
    # Found by the fuzzer (tests/fuzz/README.md says what each showed).
    "found_te_unknown_with_content_length": (WHOLE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chu;a=bnked\n"
                                                        b"Content-Length: 5\n", b"0\r\n\r\n")),
    "found_header_section_over_limit_in_one_read": (TIGHT | WHOLE, req(b"GET /" + b"p" * 300 + b" HTTP/1.1\nHost: a\n"
                                                                      b"X: " + b"f" * 300 + b"\n")),
    "found_bare_lf_in_chunk_line": (TIGHT | 0x3f, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                                    b"1;a=" + b"a" * 4400 + b"\n" * 400)),
    "found_trailers_padded": (TIGHT | SEVEN, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                                 b"1\r\nx\r\n0\r\nX-A:" + b" " * 300 + b"a" + b" " * 300 + b"\r\n\r\n")),
    "found_last_chunk_bytewise": (BYTE, req(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"0\r\n\r\n")),
    "head_and_delete": (SEVEN, req(b"HEAD / HTTP/1.1\nHost: a\n") + req(b"DELETE /r HTTP/1.1\nHost: a\n")),
}

RESPONSES = {
    "ok_content_length": (WHOLE, req(b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n", b"hello")),
    "ok_bytewise": (BYTE, req(b"HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")),
    "chunked_extensions_trailers": (SEVEN, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTrailer: X-Sum\n",
                                               b"5;a=b;c=\"d e\"\r\nhello\r\n0;z\r\nX-Sum: 5\r\n\r\n")),
    "continue_then_ok": (SEVEN, b"HTTP/1.1 100 Continue\r\n\r\n" +
                         req(b"HTTP/1.1 200 OK\nContent-Length: 3\n", b"abc")),
    "early_hints_then_ok": (WHOLE, req(b"HTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n") +
                            b"HTTP/1.1 102 Processing\r\n\r\n" + req(b"HTTP/1.1 200 OK\nContent-Length: 0\n")),
    "no_content_with_length": (WHOLE, req(b"HTTP/1.1 204 No Content\nContent-Length: 10\n")),
    "not_modified": (WHOLE, req(b"HTTP/1.1 304 Not Modified\nETag: \"x\"\nContent-Length: 100\n")),
    "head_with_length": (HEAD | WHOLE, req(b"HTTP/1.1 200 OK\nContent-Length: 100\n")),
    "head_chunked": (HEAD | SEVEN, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n")),
    "until_close_http10": (SEVEN, req(b"HTTP/1.0 200 OK\nContent-Type: text/html\n", b"<html>body to the end")),
    "until_close_http11": (WHOLE, req(b"HTTP/1.1 200 OK\nConnection: close\n", b"read until EOF")),
    "cl_and_te": (WHOLE, req(b"HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: chunked\n",
                             b"3\r\nabc\r\n0\r\n\r\n")),
    "te_gzip_until_close": (WHOLE, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n", b"\x1f\x8b\x08binary")),
    "switching_protocols": (WHOLE, req(b"HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\nUpgrade: websocket\n",
                                       b"\x81\x05hello")),
    "keep_alive_http10": (WHOLE, req(b"HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 1\n", b"x")),
    "set_cookie_twice": (WHOLE, req(b"HTTP/1.1 200 OK\nSet-Cookie: a=1\nSet-Cookie: b=2\nContent-Length: 0\n")),
    "content_length_list": (WHOLE, req(b"HTTP/1.1 200 OK\nContent-Length: 2, 2\n", b"ok")),
    "content_length_twice_same": (WHOLE, req(b"HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 2\n", b"ok")),
    "short_body_then_close": (SEVEN, req(b"HTTP/1.1 200 OK\nContent-Length: 100\n", b"only this")),
    "reason_obs_text_and_empty": (WHOLE, req(b"HTTP/1.1 404 Nicht gefunden \xe9\nContent-Length: 0\n")),
    "no_reason": (WHOLE, req(b"HTTP/1.1 200 \nContent-Length: 0\n")),
    "obs_fold": (WHOLE, req(b"HTTP/1.1 200 OK\nX-Folded: a\n b\nContent-Length: 0\n")),
    "status_not_three_digits": (WHOLE, req(b"HTTP/1.1 20 OK\nContent-Length: 0\n")),
    "version_2": (WHOLE, req(b"HTTP/2.0 200 OK\nContent-Length: 0\n")),
    "redirect": (WHOLE, req(b"HTTP/1.1 302 Found\nLocation: /elsewhere\nContent-Length: 0\n")),
    "long_chunk_extension": (SIXTY_FOUR, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                             b"1;a=" + b"a" * 3000 + b"\r\nx\r\n0\r\n\r\n")),
    "body_over_limit": (SIXTY_FOUR, req(b"HTTP/1.1 200 OK\nContent-Length: 5000\n", b"z" * 5000)),
    "tight_header_over_limit": (TIGHT_RESPONSE | SIXTY_FOUR, req(b"HTTP/1.1 200 OK\nX-Long: " + b"v" * 600 + b"\n")),
    "tight_endless_chunk_extension": (TIGHT_RESPONSE | SIXTY_FOUR, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                                                       b"1;a=" + b"a" * 5000)),
    "tight_endless_trailers": (TIGHT_RESPONSE | SIXTY_FOUR, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                                                b"1\r\nx\r\n0\r\n" + b"X-T: " + b"t" * 5000)),
    "tight_trailers_fit": (TIGHT_RESPONSE | SEVEN, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                                       b"1\r\nx\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")),
    # Found by the fuzzer (tests/fuzz/README.md says what each showed).
    "found_status_below_100": (WHOLE, req(b"HTTP/1.0 002 OK\nContent-Type: text/plain\n", b"body to the end")),
    "found_header_section_over_limit_in_one_read": (TIGHT_RESPONSE | WHOLE, req(b"HTTP/1.1 200 " + b"r" * 300 +
                                                                               b"\nX: " + b"f" * 300 +
                                                                               b"\nContent-Length: 0\n")),
    "found_bare_lf_in_chunk_line": (TIGHT_RESPONSE | 0x3f, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                                             b"1;a=" + b"a" * 4400 + b"\n" * 400)),
    "found_trailers_folded": (TIGHT_RESPONSE | SEVEN, req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                                                          b"0\r\nX-A: a" + b"".join(b"\r\n" + b"\t" * 200 + b"b"
                                                                                     for _ in range(3)) + b"\r\n\r\n")),
    "found_101_kept_for_reuse": (WHOLE, req(b"HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\nUpgrade: x\n")),
    "extra_bytes_after": (WHOLE, req(b"HTTP/1.1 200 OK\nContent-Length: 1\n", b"x") +
                          b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"),
}


def write(directory, seeds):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (control, data) in seeds.items():
        (directory / name).write_bytes(bytes([control]) + data)


here = pathlib.Path(__file__).resolve().parent
write(here / "corpus" / "request", REQUESTS)
write(here / "corpus" / "response", RESPONSES)
