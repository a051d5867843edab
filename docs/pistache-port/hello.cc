// Pistache HTTPS hello server for docs/pistache-port/check.sh.
//
//   hello PORT THREADS CERT KEY [--ignore-sigpipe]
//
// GET /    -> 200 "Hello, World!"
// GET /big -> a 4 MiB file through Http::serveFile (SSL_sendfile over TLS)
//
// SIGPIPE is deliberately left at its default disposition: a TLS write to a
// client that reset must not kill the process. `--ignore-sigpipe` ignores it,
// as many applications do by hand, so that check.sh can show what else goes
// wrong in an unpatched server once SIGPIPE no longer kills it.

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/router.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace Pistache;

int main(int argc, char** argv)
{
    const bool ignoreSigpipe = argc == 6 && std::string(argv[5]) == "--ignore-sigpipe";
    if (argc != 5 && !ignoreSigpipe)
    {
        std::fprintf(stderr, "usage: %s PORT THREADS CERT KEY [--ignore-sigpipe]\n", argv[0]);
        return 2;
    }
    if (ignoreSigpipe)
        std::signal(SIGPIPE, SIG_IGN);
    const auto port    = static_cast<uint16_t>(std::atoi(argv[1]));
    const int threads  = std::atoi(argv[2]);
    const std::string cert = argv[3], key = argv[4];

    char tmpl[] = "/tmp/pistache-hello-big-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0)
        return 1;
    const std::string big(4 << 20, 'x');
    if (write(fd, big.data(), big.size()) != static_cast<ssize_t>(big.size()))
        return 1;
    close(fd);
    const std::string bigPath = tmpl;

    Rest::Router router;
    Rest::Routes::Get(router, "/", [](const Rest::Request&, Http::ResponseWriter response) {
        response.send(Http::Code::Ok, "Hello, World!");
        return Rest::Route::Result::Ok;
    });
    Rest::Routes::Get(router, "/big", [bigPath](const Rest::Request&, Http::ResponseWriter response) {
        Http::serveFile(response, bigPath, MIME(Application, OctetStream));
        return Rest::Route::Result::Ok;
    });

    Http::Endpoint server(Address(IP::loopback(), Port(port)));
    auto opts = Http::Endpoint::options().threads(threads).flags(Tcp::Options::ReuseAddr);
    server.init(opts);
    server.setHandler(router.handler());
    server.useSSL(cert, key);
    std::printf("listening on https://127.0.0.1:%u/ with %d threads\n", port, threads);
    std::fflush(stdout);
    server.serve();
    unlink(bigPath.c_str());
    return 0;
}
