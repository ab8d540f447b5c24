# laminar:dev: the host-built broker on a minimal Debian bookworm. Build it with
# scripts/build-image, which first makes laminar-base:bookworm with debootstrap (no image
# registry needed) and then runs `docker build -t laminar:dev .` against this file.
FROM laminar-base:bookworm
LABEL org.laminar.image=laminar

# The RelWithDebInfo binary from `make build`; scripts/build-image passes another build dir.
ARG LAMINAR_BIN=build/broker/laminar
COPY ${LAMINAR_BIN} /usr/local/bin/laminar

# Data goes to /var/lib/laminar unless --log-dirs / --config log.dirs=... says otherwise.
RUN mkdir -p /var/lib/laminar
VOLUME /var/lib/laminar
EXPOSE 9092 9093 9644
ENTRYPOINT ["laminar", "serve"]
CMD ["--listeners", "PLAINTEXT://0.0.0.0:9092", "--log-dirs", "/var/lib/laminar"]
