"""A test certificate authority made at test time with the `openssl` command.

make_pki(directory) writes a CA and certificates signed by it, each as a PEM
certificate (leaf first, then the CA: a full chain) and its own key file:

  ca           the CA itself (ca.pem; trust it with curl --cacert)
  server       CN and SAN localhost, 127.0.0.1 and ::1
  server2      the same names, another key and serial (reload tests)
  other        SAN other.test only (SNI tests: a second name)
  wronghost    SAN wrong.example only (hostname-check failures)
  expired      the names of server, valid only in 2020
  client       a client certificate (extendedKeyUsage clientAuth)

Returns a dict name -> {"cert": path, "key": path, "serial": hex string}.
Nothing is mocked: these are real certificates that OpenSSL, curl, nginx and
Python's ssl module verify as usual. Keys are EC P-256 (fast to make).
"""

import os
import subprocess

_CA_CONF = """
[ ca ]
default_ca = tca
[ tca ]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[ anything ]
commonName = supplied
"""

_LEAVES = {
    # name: (CN, subjectAltName, extendedKeyUsage, start, end)
    "server": ("localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth", None, None),
    "server2": ("localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth", None, None),
    "other": ("other.test", "DNS:other.test", "serverAuth", None, None),
    "wronghost": ("wrong.example", "DNS:wrong.example", "serverAuth", None, None),
    "expired": ("localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth",
                "20200101000000Z", "20200102000000Z"),
    "client": ("restspy-test-client", None, "clientAuth", None, None),
}


def _run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(path):
    _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", path)


def _serial(cert):
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-serial"], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].lower()


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "ca.cnf")
    with open(conf, "w") as f:
        f.write(_CA_CONF.format(d=d))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    ca_key, ca_pem = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    _key(ca_key)
    _run("openssl", "req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=restspy test CA",
         "-days", "30", "-addext", "basicConstraints=critical,CA:true",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca_pem)
    out = {"ca": {"cert": ca_pem, "key": ca_key, "serial": _serial(ca_pem)}}
    for name, (cn, san, eku, start, end) in _LEAVES.items():
        key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
        leaf, chain = os.path.join(d, name + ".leaf.pem"), os.path.join(d, name + ".pem")
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\n")
            f.write("extendedKeyUsage=%s\n" % eku)
            if san:
                f.write("subjectAltName=%s\n" % san)
        _key(key)
        _run("openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
        dates = (["-startdate", start, "-enddate", end] if start else ["-days", "30"])
        _run("openssl", "ca", "-batch", "-config", conf, "-cert", ca_pem, "-keyfile", ca_key,
             "-extfile", ext, "-notext", "-in", csr, "-out", leaf, *dates)
        with open(chain, "w") as f, open(leaf) as a, open(ca_pem) as b:
            f.write(a.read() + b.read())
        out[name] = {"cert": chain, "key": key, "serial": _serial(leaf)}
    return out


if __name__ == "__main__":
    import sys
    import json
    print(json.dumps(make_pki(sys.argv[1]), indent=1))
