#pragma once
/// @file
/// fiberloop's network adapters: TCP streams and servers, HTTP/1.1 server and client,
/// all of which look blocking inside a fiber and suspend only that fiber.
#include <fiberloop/net/http.hpp>
#include <fiberloop/net/http_client.hpp>
#include <fiberloop/net/http_server.hpp>
#include <fiberloop/net/tcp_server.hpp>
#include <fiberloop/net/tcp_stream.hpp>
