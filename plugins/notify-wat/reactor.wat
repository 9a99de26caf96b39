;; notify: the demo's customer notifier, written by hand in component text
;; (nothing generated, no SDK, no WASI), so the demo system is polyglot with
;; no toolchain beyond Rust: the host reads component text directly (`.wat`).
;; Consumes `inventory.rejected`; for every rejection proposes one
;; `customer.notified` on the same entity (the order) and scope, carrying the
;; rejection's payload, caused by the rejection.
;;
;; It is plugins/passthrough-wat with other names: see that file for the
;; canonical ABI layouts (batch, event, proposal, result) it reads and writes.
(component
  (import "batpak:reactor/types@0.1.0" (instance $types
    (type $event-id' (record (field "hi" u64) (field "lo" u64)))
    (export "event-id" (type $event-id (eq $event-id')))
    (type $event' (record
       (field "id" $event-id) (field "sequence" u64) (field "entity-sequence" u64)
       (field "entity" u32) (field "scope" u32) (field "kind" u32)
       (field "causation" (option $event-id)) (field "correlation" $event-id)
       (field "timestamp-us" u64) (field "payload-offset" u32) (field "payload-len" u32)))
    (export "event" (type $event (eq $event')))
    (type $canal-batch' (variant (case "empty") (case "one" $event) (case "many" (list $event))))
    (export "canal-batch" (type $canal-batch (eq $canal-batch')))
    (type $batch' (record (field "strings" (list string)) (field "payloads" (list u8)) (field "events" $canal-batch)))
    (export "batch" (type $batch (eq $batch')))
    (type $coordinate' (record (field "entity" string) (field "scope" string)))
    (export "coordinate" (type $coordinate (eq $coordinate')))
    (type $causation' (variant (case "source") (case "event" $event-id) (case "none")))
    (export "causation" (type $causation (eq $causation')))
    (type $proposal' (record (field "source" u32) (field "coordinate" $coordinate) (field "kind" string) (field "payload" (list u8)) (field "causation" $causation)))
    (export "proposal" (type $proposal (eq $proposal')))
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
  (alias export $types "batch" (type $batch))
  (alias export $types "proposal" (type $proposal))
  (alias export $types "react-error" (type $react-error))

;; The core module: a bump allocator reset after every call.
  (core module $m
    (memory (export "memory") 2)
    (global $bump (mut i32) (i32.const 65536))
    (data (i32.const 1024) "notify")
    (data (i32.const 1048) "0.1.0")
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
    (func (export "react") (param $b i32) (result i32)
      (local $strs i32) (local $payloads i32) (local $evs i32) (local $n i32)
      (local $out i32) (local $i i32) (local $e i32) (local $p i32)
      (local.set $strs (i32.load (local.get $b)))
      (local.set $payloads (i32.load offset=8 (local.get $b)))
      (if (i32.eq (i32.load8_u offset=16 (local.get $b)) (i32.const 1))
        (then (local.set $evs (i32.add (local.get $b) (i32.const 24)))
              (local.set $n (i32.const 1))))
      (if (i32.eq (i32.load8_u offset=16 (local.get $b)) (i32.const 2))
        (then (local.set $evs (i32.load offset=24 (local.get $b)))
              (local.set $n (i32.load offset=28 (local.get $b)))))
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 8)
                                     (i32.mul (local.get $n) (i32.const 64))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $e (i32.add (local.get $evs) (i32.mul (local.get $i) (i32.const 104))))
          (local.set $p (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 64))))
          (i32.store (local.get $p) (local.get $i))
          ;; entity and scope: copy the (ptr,len) pair out of batch.strings
          (i64.store offset=4 (local.get $p)
            (i64.load (i32.add (local.get $strs) (i32.shl (i32.load offset=32 (local.get $e)) (i32.const 3)))))
          (i64.store offset=12 (local.get $p)
            (i64.load (i32.add (local.get $strs) (i32.shl (i32.load offset=36 (local.get $e)) (i32.const 3)))))
          (i32.store offset=20 (local.get $p) (i32.const 1080))
          (i32.store offset=24 (local.get $p) (i32.const 17))
          (i32.store offset=28 (local.get $p)
            (i32.add (local.get $payloads) (i32.load offset=96 (local.get $e))))
          (i32.store offset=32 (local.get $p) (i32.load offset=100 (local.get $e)))
          (i32.store8 offset=40 (local.get $p) (i32.const 0))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.store8 (i32.const 3072) (i32.const 0))
      (i32.store (i32.const 3076) (local.get $out))
      (i32.store (i32.const 3080) (local.get $n))
      (i32.const 3072))
    (func (export "reset") (param i32) (global.set $bump (i32.const 65536)))
  )
  (core instance $i (instantiate $m))
  (func $describe (result $descriptor) (canon lift (core func $i "describe") (memory (core memory $i "memory"))))
  (func $init (param "config" string) (result (result (error string)))
     (canon lift (core func $i "init") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (func $react (param "batch" $batch) (result (result (list $proposal) (error $react-error)))
     (canon lift (core func $i "react") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc")) (post-return (core func $i "reset"))))
  (instance $api
    (export "describe" (func $describe))
    (export "init" (func $init))
    (export "react" (func $react)))
  (export "batpak:reactor/reactor@0.1.0" (instance $api))
)