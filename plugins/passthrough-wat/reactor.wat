;; passthrough-wat: the pass-through reactor written by hand in component
;; text against batpak:reactor@0.2.0 (nothing generated, no SDK, no WASI).
;; Consumes `bench.in`; for every event proposes one `bench.out` on the same
;; entity and scope with the same payload bytes, caused by the source event:
;; the same behaviour as the Rust, C, Python and JavaScript pass-through
;; reactors (the languages test compares them) and as its 0.1.0 twin,
;; plugins/fixtures/passthrough-wat-0.1.0.wat. The host reads component text
;; directly (`.wat`).
;;
;; The flat layouts (the WIT doc of `react`; all little-endian, offsets in
;; bytes from the start of each buffer):
;;   batch      header: count u32 @0, string-count @4, strings-offset @8,
;;              payloads-offset @12; event i at 16 + 96*i with
;;              payload-offset u32 @88, payload-len u32 @92 (relative to
;;              payloads-offset)
;;   proposals  header: count u32 @0, reserved @4; proposal k at 8 + 56*k:
;;              source @0, kind index @4, entity (offset,len) @8,
;;              scope (offset,len) @16, payload (offset,len) @24,
;;              causation tag @32 (0 = the source), reserved @36, cause @40
;; Entity and scope are left empty (len 0), which means "the source event's";
;; kind index 0 is `bench.out`, the only declared kind. The payload area of
;; the batch is copied once, right after the records, and each proposal
;; points at its source event's payload inside that copy.
;; The canonical ABI hands `react` the batch as (ptr, len) and reads its
;; result from a 12-byte area: discriminant u8 @0, list (ptr,len) @4.
(component
  (import "batpak:reactor/types@0.2.0" (instance $types
    (type $event-id' (record (field "hi" u64) (field "lo" u64)))
    (export "event-id" (type $event-id (eq $event-id')))
    (type $react-error' (record (field "message" string) (field "event" (option u32))))
    (export "react-error" (type $react-error (eq $react-error')))
    (type $region' (record (field "kinds" (list string)) (field "entity-prefix" (option string)) (field "scope" (option string))))
    (export "region" (type $region (eq $region')))
    (type $canal-kind' (enum "cursor-guaranteed" "lossy-subscription"))
    (export "canal-kind" (type $canal-kind (eq $canal-kind')))
    (type $descriptor' (record (field "name" string) (field "version" string) (field "region" $region) (field "canal" $canal-kind) (field "emits" (list string)) (field "max-batch" u32)))
    (export "descriptor" (type $descriptor (eq $descriptor')))
  ))
  (alias export $types "descriptor" (type $descriptor))
  (alias export $types "react-error" (type $react-error))
  ;; The core module: a bump allocator reset after every call.
  (core module $m
    (memory (export "memory") 2)
    (global $bump (mut i32) (i32.const 65536))
    (data (i32.const 1024) "passthrough-wat")
    (data (i32.const 1048) "0.2.0")
    (data (i32.const 1056) "bench.in")
    (data (i32.const 1072) "bench.out")
    ;; list<string> kinds: one (ptr,len) pair at 1100 -> "bench.in"
    (data (i32.const 1100) "\20\04\00\00\08\00\00\00")
    ;; list<string> emits at 1108 -> "bench.out"
    (data (i32.const 1108) "\30\04\00\00\09\00\00\00")
    ;; descriptor record at 2048 (64 bytes)
    (data (i32.const 2048)
      "\00\04\00\00\0f\00\00\00"   ;; name ptr=1024 len=15
      "\18\04\00\00\05\00\00\00"   ;; version ptr=1048 len=5
      "\4c\04\00\00\01\00\00\00"   ;; region.kinds ptr=1100 len=1
      "\00\00\00\00\00\00\00\00\00\00\00\00"   ;; entity-prefix none
      "\00\00\00\00\00\00\00\00\00\00\00\00"   ;; scope none
      "\00\00\00\00"               ;; canal cursor-guaranteed @48
      "\54\04\00\00\01\00\00\00"   ;; emits ptr=1108 len=1 @52
      "\00\00\00\00")              ;; max-batch 0 @60
    ;; result area at 3072: ok, empty list (init uses only the discriminant)
    (data (i32.const 3072) "\00\00\00\00\08\00\00\00\00\00\00\00\00\00\00\00")
    (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (block $ok
        (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
                    (i32.const -1))
          (then unreachable)))
      (local.get $p))
    (func (export "describe") (result i32) (i32.const 2048))
    (func (export "init") (param i32 i32) (result i32) (global.set $bump (i32.const 65536)) (i32.const 3072))
    (func (export "react") (param $b i32) (param $len i32) (result i32)
      (local $n i32) (local $po i32) (local $tail i32) (local $out i32)
      (local $i i32) (local $e i32) (local $p i32)
      (local.set $n (i32.load (local.get $b)))
      (local.set $po (i32.load offset=12 (local.get $b)))
      ;; the records end (and the payload copy starts) at 8 + 56 * n
      (local.set $tail (i32.add (i32.const 8) (i32.mul (local.get $n) (i32.const 56))))
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 8)
                        (i32.add (local.get $tail) (i32.sub (local.get $len) (local.get $po)))))
      (i32.store (local.get $out) (local.get $n))
      (i32.store offset=4 (local.get $out) (i32.const 0))
      (memory.copy (i32.add (local.get $out) (local.get $tail))
                   (i32.add (local.get $b) (local.get $po))
                   (i32.sub (local.get $len) (local.get $po)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $e (i32.add (local.get $b) (i32.add (i32.const 16) (i32.mul (local.get $i) (i32.const 96)))))
          (local.set $p (i32.add (local.get $out) (i32.add (i32.const 8) (i32.mul (local.get $i) (i32.const 56)))))
          (i32.store (local.get $p) (local.get $i))           ;; source
          (i32.store offset=4 (local.get $p) (i32.const 0))   ;; kind: emits[0]
          (i64.store offset=8 (local.get $p) (i64.const 0))   ;; entity: the source's
          (i64.store offset=16 (local.get $p) (i64.const 0))  ;; scope: the source's
          (i32.store offset=24 (local.get $p)
            (i32.add (local.get $tail) (i32.load offset=88 (local.get $e))))
          (i32.store offset=28 (local.get $p) (i32.load offset=92 (local.get $e)))
          (i64.store offset=32 (local.get $p) (i64.const 0))  ;; causation 0, reserved 0
          (i64.store offset=40 (local.get $p) (i64.const 0))
          (i64.store offset=48 (local.get $p) (i64.const 0))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.store8 (i32.const 3072) (i32.const 0))
      (i32.store (i32.const 3076) (local.get $out))
      (i32.store (i32.const 3080) (i32.add (local.get $tail) (i32.sub (local.get $len) (local.get $po))))
      (i32.const 3072))
    (func (export "reset") (param i32) (global.set $bump (i32.const 65536)))
  )
  (core instance $i (instantiate $m))
  (func $describe (result $descriptor) (canon lift (core func $i "describe") (memory (core memory $i "memory"))))
  (func $init (param "config" string) (result (result (error string)))
     (canon lift (core func $i "init") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (func $react (param "batch" (list u8)) (result (result (list u8) (error $react-error)))
     (canon lift (core func $i "react") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc")) (post-return (core func $i "reset"))))
  (instance $api
    (export "describe" (func $describe))
    (export "init" (func $init))
    (export "react" (func $react)))
  (export "batpak:reactor/reactor@0.2.0" (instance $api))
)
