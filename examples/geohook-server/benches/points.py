"""The benches' shared load: the same seeded random points around 33,-115 in
a 2x2 degree box, as RESP commands for geohook-server (SET ... POINT) and,
when a second path is given, for redis-server (GEOADD).

Usage: python3 points.py N GEO_FILE [REDIS_FILE]
"""
import random
import sys


def resp(*args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        a = str(a)
        out.append(f"${len(a.encode())}\r\n{a}\r\n")
    return "".join(out)


def main():
    n, geo_path = int(sys.argv[1]), sys.argv[2]
    redis_path = sys.argv[3] if len(sys.argv) > 3 else None
    r = random.Random(38)
    with open(geo_path, "w") as g, open(redis_path or "/dev/null", "w") as rd:
        for i in range(n):
            lat = 32 + r.random() * 2
            lon = -116 + r.random() * 2
            g.write(resp("SET", "fleet", f"p{i}", "POINT", f"{lat:.6f}", f"{lon:.6f}"))
            if redis_path:
                rd.write(resp("GEOADD", "fleet", f"{lon:.6f}", f"{lat:.6f}", f"p{i}"))


if __name__ == "__main__":
    main()
