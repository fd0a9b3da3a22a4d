# cli:* - tessera-train (tools/tessera-train) on data/digits.csv, as a user runs it.
#   cmake -DEXE=<tessera-train> -DDATA=<digits.csv> -DDIR=<scratch folder> [-DMPIEXEC=<mpirun>] -P cli.cmake
# Without MPIEXEC: --help names every option; a 2-worker fit writes the model and the history and
# reaches 90%; --folds 3 prints 3 folds and their mean; --plan prints the plan; a bad option, a bad
# value and --mpi in the build without MPI exit 2 naming them; a missing file exits 1;
# --strategy pipeline and columns train; a fit stopped by SIGTERM resumes from its checkpoint.
# With MPIEXEC: EXE is tessera-train-mpi, run with --mpi by 2 ranks.
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")

# Runs EXE with the arguments after `expect_rc`; fails unless the status is expect_rc; the output
# (stdout and stderr) is left in `_out`.
function(run expect_rc)
  execute_process(COMMAND ${_launch} ${EXE} ${ARGN} WORKING_DIRECTORY "${DIR}" RESULT_VARIABLE _rc
                  OUTPUT_VARIABLE _o ERROR_VARIABLE _e TIMEOUT 120)
  string(JOIN " " _line ${_launch} ${EXE} ${ARGN})
  message("$ ${_line}\n${_o}${_e}")
  if(NOT _rc STREQUAL "${expect_rc}")
    message(FATAL_ERROR "cli: FAILED: exit status ${_rc}, expected ${expect_rc}")
  endif()
  set(_out "${_o}${_e}" PARENT_SCOPE)
endfunction()
function(expect regex what)
  if(NOT _out MATCHES "${regex}")
    message(FATAL_ERROR "cli: FAILED: ${what}: the output does not match ${regex}")
  endif()
endfunction()
# an accuracy above 0.9 (0.9001 ... 1.0000)
set(_above_90 "test accuracy (0\\.9[0-9]*[1-9][0-9]*|1\\.0+) ")

if(DEFINED MPIEXEC AND NOT MPIEXEC STREQUAL "")
  set(_launch ${MPIEXEC} -n 2 --oversubscribe)
  run(0 ${DATA} --mpi --model mlp:128 --workers 1 --save mpi.tsm --history mpi.csv)
  expect("1 worker\\(s\\) x 2 process\\(es\\)" "--mpi trains on 2 ranks")
  expect("${_above_90}" "--mpi accuracy")
  if(NOT EXISTS "${DIR}/mpi.tsm" OR NOT EXISTS "${DIR}/mpi.csv")
    message(FATAL_ERROR "cli: FAILED: --mpi did not write mpi.tsm and mpi.csv")
  endif()
  file(REMOVE_RECURSE "${DIR}")
  message("cli: OK")
  return()
endif()
set(_launch "")

# --help: status 0, every option named
run(0 --help)
foreach(_opt --label --no-header --task --classes --standardize --no-standardize --model --optimizer --epochs --batch
             --micro-batches --seed --workers --strategy --deterministic --mpi --test-fraction --folds --save --history
             --checkpoint --checkpoint-every --plan --help)
  string(FIND "${_out}" "${_opt}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "cli: FAILED: --help does not name ${_opt}")
  endif()
endforeach()
expect("example" "--help has an example")

# a 2-worker fit that saves the model and the history
run(0 ${DATA} --label last --model mlp:64,128,10 --workers 2 --save model.tsm --history history.csv)
expect("2 worker\\(s\\) x 1 process\\(es\\)" "2 workers")
expect("${_above_90}" "the fit's accuracy")
if(NOT EXISTS "${DIR}/model.tsm")
  message(FATAL_ERROR "cli: FAILED: --save model.tsm wrote nothing")
endif()
file(STRINGS "${DIR}/history.csv" _lines)
list(LENGTH _lines _n)
if(NOT _n EQUAL 21)  # a header and 20 epochs
  message(FATAL_ERROR "cli: FAILED: history.csv has ${_n} lines, expected 21")
endif()

# 3-fold cross-validation
run(0 ${DATA} --folds 3 --model mlp:128 --workers 2 --epochs 10)
foreach(_k 1 2 3)
  expect("fold ${_k}/3: train 1198, test 599, loss [0-9.]+, accuracy 0\\.9" "fold ${_k}")
endforeach()
expect("cross-validation: accuracy mean 0\\.9[0-9]+, std 0\\.[0-9]+" "the mean over the folds")

# the plan, and nothing trained
run(0 ${DATA} --model mlp:128 --workers 2 --plan)
expect("policies: DataSplit<Random>, Load<Sequential>, Partition<Replicate>" "--plan's policies")
expect("steps: 23 per epoch x 20 epochs" "--plan's steps")
if(_out MATCHES "test accuracy")
  message(FATAL_ERROR "cli: FAILED: --plan trained")
endif()

# bad command lines: status 2 and the argument named; a library error: status 1 and its message
run(2 ${DATA} --no-such-option)
expect("--no-such-option: unknown option" "an unknown option")
run(2 ${DATA} --epochs many)
expect("--epochs: expected a whole number >= 1, got 'many'" "a bad value")
run(2 ${DATA} --strategy diagonal)
expect("--strategy: expected replicate, pipeline or columns" "a bad strategy")
run(2 ${DATA} --mpi)
expect("--mpi: this tessera-train was built without MPI" "--mpi without MPI")
run(2)
expect("DATA: no data file given" "no data")
run(1 no_such_file.csv)
expect("no_such_file.csv: cannot open for reading" "a missing file")

# the other strategies
run(0 ${DATA} --model mlp:128 --strategy pipeline --workers 2 --micro-batches 4)
expect("pipeline, 2 worker\\(s\\)" "--strategy pipeline")
expect("${_above_90}" "the pipeline's accuracy")
run(0 ${DATA} --model mlp:128 --strategy columns --workers 2 --epochs 10)
expect("${_above_90}" "the column split's accuracy")

# checkpoints: a fit that finds a checkpoint goes on from it, to the losses of a fit never stopped
run(0 ${DATA} --model mlp:128 --workers 2 --epochs 3 --history whole.csv)
run(0 ${DATA} --model mlp:128 --workers 2 --epochs 3 --checkpoint ck/digits --checkpoint-every 30)
run(0 ${DATA} --model mlp:128 --workers 2 --epochs 3 --checkpoint ck/digits --history resumed.csv)
expect("resuming from ck/digits-0+60\\.tsrckpt: epoch 3, step 14 of 23" "the resumed fit")
file(STRINGS "${DIR}/whole.csv" _whole REGEX "^[0-9]")
file(STRINGS "${DIR}/resumed.csv" _resumed REGEX "^[0-9]")
list(TRANSFORM _whole REPLACE "^([0-9]+,[^,]+),.*" "\\1")
list(TRANSFORM _resumed REPLACE "^([0-9]+,[^,]+),.*" "\\1")
list(LENGTH _whole _n)
if(NOT _n EQUAL 3 OR NOT _whole STREQUAL _resumed)
  message(FATAL_ERROR "cli: FAILED: the resumed fit's losses ${_resumed} differ from the whole fit's ${_whole}")
endif()

file(REMOVE_RECURSE "${DIR}")
message("cli: OK")
