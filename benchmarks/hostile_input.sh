#!/bin/bash
# Hostile input and faults (issue 13), tried as a user would, from an empty folder:
#   mkdir probe && cd probe && bash ../benchmarks/hostile_input.sh
# Each case prints its exit code, how many lines it wrote to stderr and the last two. Every case
# should be rc=2 with one `error:` line (the tests in tests/cli/test_cli.py etc. assert it).
T=$(cd "$(dirname "$0")/.." && pwd)/tests/spaces/tiny.yaml
run() { name=$1; shift; timeout 120 "$@" > out.txt 2> err.txt; rc=$?; echo "== $name: rc=$rc lines=$(wc -l < err.txt)"; tail -2 err.txt | cut -c1-220; }
[ -d base ] || prunesearch train-base --space $T --out base > /dev/null 2>&1
# a valid spec to mutate
[ -f spec.json ] || prunesearch find --space $T --base base --budget 50%FLOPs --trials 2 --out find > /dev/null 2>&1
cp find/spec-50pct-flops.json spec.json
python -c "print('{\"a\":' * 100000 + '1' + '}' * 100000)" > deep.json
run deep-json prunesearch show deep.json
python -c "
import json; d=json.load(open('spec.json')); d['flops']=int('9'*4000); s=json.dumps(d); s=s.replace('9'*4000,'9'*5000); open('digits.json','w').write(s)"
run digits-json prunesearch show digits.json
python -c "
import json; d=json.load(open('spec.json')); d['model']='x'*(10**7); open('bigstr.json','w').write(json.dumps(d))"
run bigstr-json prunesearch show bigstr.json
python -c "
import json; d=json.load(open('spec.json')); d['input_shape']=[3,2000,2000]; open('shape.json','w').write(json.dumps(d))"
run bigshape /usr/bin/time -f "%e s %M KB" prunesearch show shape.json
python -c "
import json; d=json.load(open('spec.json')); d['input_shape']=[3,100000,100000]; open('shape2.json','w').write(json.dumps(d))"
run hugeshape prunesearch show shape2.json
python -c "
import json; d=json.load(open('spec.json')); d['input_shape']=[3,5,5]; open('shape3.json','w').write(json.dumps(d))"
run wrongshape prunesearch show shape3.json
echo x > afile
run out-is-file prunesearch train-base --space $T --out afile --epochs 1
run out-is-file-find prunesearch find --space $T --base base --budget 50%FLOPs --trials 1 --out afile
run journal-empty prunesearch find --space $T --base base --budget 50%FLOPs --trials 1 --storage journal: --out j1
run journal-proc prunesearch find --space $T --base base --budget 50%FLOPs --trials 1 --storage journal:/proc/x/study.log --out j2
run out-proc prunesearch train-base --space $T --out /proc/xx --epochs 1
run budget-inf prunesearch find --space $T --base base --budget 1e309FLOPs --out b1
run budget-inf2 prunesearch find --space $T --base base --budget 1e309%FLOPs --out b2
sed 's/synthetic: {image_size: 16,/synthetic: {bogus: 1, image_size: 16,/' $T > s1.yaml
run synthetic-key prunesearch train-base --space s1.yaml --out s1 --epochs 1; ls s1 2>/dev/null
sed 's/train: {epochs: 2,/train: {epochs: 2, momentum: -0.5,/' $T > s2.yaml
run neg-momentum prunesearch train-base --space s2.yaml --out s2 --epochs 1; ls s2 2>/dev/null
python - <<'PY'
import struct, json
raw = open("base/model.safetensors","rb").read()
n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8+n]); h["__metadata__"]["model_args"] = "{not json"
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open("badmeta.safetensors","wb").write(struct.pack("<Q", len(hb)) + hb + raw[8+n:])
PY
run base-meta prunesearch find --space $T --base badmeta.safetensors --budget 50%FLOPs --trials 1 --out bm
[ -d arch ] || prunesearch train-arch spec.json --epochs 1 --out arch > /dev/null 2>&1
run arch-as-base prunesearch find --space $T --base arch --budget 50%FLOPs --trials 1 --out ab; ls ab 2>/dev/null
cp -r arch arch2; echo "{bad" > arch2/metrics.json
run corrupt-metrics-resume prunesearch train-arch spec.json --epochs 2 --out arch2 --resume
mkdir -p r1; cp -r find/* r1/; echo "{}" > r1/metrics.json
run report-metrics-empty prunesearch report r1
mkdir -p r2; cp -r find/* r2/; echo "[]" > r2/family.json
run report-family-list prunesearch report r2
mkdir -p r3; cp -r find/* r3/; rm r3/study.db
run report-no-db prunesearch report r3; ls r3 | grep study
mkdir -p r4; echo "{}" > r4/metrics.json
run report-only-empty-metrics prunesearch report r4
