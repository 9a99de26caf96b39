;; notify: the demo's customer notifier, written by hand in component text
;; (nothing generated, no SDK, no WASI), so the demo system is polyglot with
;; no toolchain beyond Rust: the host reads component text directly (`.wat`).
;; Consumes `inventory.rejected`; for every rejection proposes one
;; `customer.notified` on the same entity (the order) and scope, carrying the
;; rejection's payload, caused by the rejection.
;;
;; It is plugins/passthrough-wat (batpak:reactor@0.2.0) with other names: see
;; that file for the flat batch and proposals layouts it reads and writes.
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
    (data (i32.const 1024) "notify")
    (data (i32.const 1048) "0.2.0")
    (data (i32.const 1056) "inventory.rejected")
    (data (i32.const 1080) "customer.notified")
    ;; list<string> kinds: one (ptr,len) pair at 1100 -> "inventory.rejected"
    (data (i32.const 1100) "\20\04\00\00\12\00\00\00")
    ;; list<string> emits at 1108 -> "customer.notified"
    (data (i32.const 1108) "\38\04\00\00\11\00\00\00")
    ;; descriptor record at 2048 (64 bytes)
    (data (i32.const 2048)
      "\00\04\00\00\06\00\00\00"   ;; name ptr=1024 len=6
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
          (i32.store offset=4 (local.get $p) (i32.const 0))   ;; kind: emits[0] = customer.notified
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
