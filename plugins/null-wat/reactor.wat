;; A reactor written by hand in component text against
;; batpak:reactor@0.2.0, with no SDK and no WASI: it consumes `bench.in`,
;; declares `bench.out` and returns no proposals (an empty buffer).
;; The tests run it to prove the WIT is usable from any toolchain, and the
;; reactor benchmark times it to isolate the host side of the boundary.
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

  (core module $m
    (memory (export "memory") 2)
    (global $bump (mut i32) (i32.const 65536))
    ;; strings
    (data (i32.const 1024) "null")
    (data (i32.const 1032) "0.2.0")
    (data (i32.const 1040) "bench.in")
    (data (i32.const 1056) "bench.out")
    ;; list<string> kinds: one (ptr,len) pair at 1100
    (data (i32.const 1100) "\10\04\00\00\08\00\00\00")
    ;; list<string> emits at 1108
    (data (i32.const 1108) "\20\04\00\00\09\00\00\00")
    ;; descriptor record at 2048 (64 bytes)
    (data (i32.const 2048)
      "\00\04\00\00\04\00\00\00"   ;; name ptr=1024 len=4
      "\08\04\00\00\05\00\00\00"   ;; version ptr=1032 len=5
      "\4c\04\00\00\01\00\00\00"   ;; region.kinds ptr=1100 len=1
      "\00\00\00\00\00\00\00\00\00\00\00\00"   ;; entity-prefix none (disc@24, ptr@28, len@32)
      "\00\00\00\00\00\00\00\00\00\00\00\00"   ;; scope none (disc@36, ptr@40, len@44)
      "\00\00\00\00"               ;; canal @48
      "\54\04\00\00\01\00\00\00"   ;; emits ptr=1108 len=1 @52
      "\00\00\00\00")              ;; max-batch @60
    ;; ok result areas at 3072: disc 0, list ptr 8 len 0
    (data (i32.const 3072) "\00\00\00\00\08\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      ;; align up
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (block $ok
        (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (drop (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))))
      (local.get $p))
    (func (export "describe") (result i32) (i32.const 2048))
    (func (export "init") (param i32 i32) (result i32) (global.set $bump (i32.const 65536)) (i32.const 3072))
    (func (export "react") (param i32 i32) (result i32) (i32.const 3072))
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