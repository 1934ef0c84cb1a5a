# Two entry points: `make demo` (set up + small pipeline run + report) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of torch that lies on this machine's disk; pyproject keeps the range open for GPU users.
TORCH_PIN ?= torch==2.13.0
# The torchvision of that torch, and the format packages whose own pins would replace the CPU torch (installed
# without their dependencies; pyproject's extras lerobot / robomimic list what they import). docs/formats.md.
TORCHVISION_PIN ?= torchvision==0.28.0
FORMAT_PINS ?= lerobot==0.4.4 robomimic==0.3.0

.PHONY: demo test test-slow docs docs-serve bench bench-scale-out quality robustness state-policy paper paper-touch paper-shapes paper-status lint clean venv
.SECONDARY:  # keep every training, dataset and evaluation a pattern rule made

venv: $(VENV)/.installed

# Not on the Makefile itself: editing a target must not reinstall the environment (touch pyproject.toml
# after changing TORCH_PIN).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q --no-deps "$(TORCHVISION_PIN)" $(FORMAT_PINS)
	$(PY) -m pip install -q -e ".[dev,rl,ray,stats,deploy,lerobot,robomimic]"
	touch $@

demo: venv
	$(PY) -m mmrep.demo --out outputs/demo

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

# The documentation site (mkdocs.yml; pages in docs/). --strict: a broken link or a missing reference fails.
$(VENV)/.docs-installed: pyproject.toml | venv
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.docs-installed  # http://127.0.0.1:8000, rebuilt on every save
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: venv  # results land in outputs/bench; committed copies live in benchmarks/results
	$(PY) benchmarks/env_step.py --out outputs/bench/env_step.json
	$(PY) benchmarks/expert_success.py --episodes 50 --out outputs/bench/expert_success.json
	$(PY) benchmarks/expert_success.py --episodes 20 --physics-hz 240 \
		--out outputs/bench/expert_success_240hz.json
	$(PY) benchmarks/collect.py --out outputs/bench/collect.json
	$(PY) benchmarks/loader.py --out outputs/bench/loader.json
	$(PY) benchmarks/train_throughput.py --out outputs/bench/train_throughput.json

# Scale-out (docs/results/scale-out.md): datasets under other numeric kernels and on Ray (about 3 minutes),
# Ray collection against the local pool and DDP against one process (about 3 minutes, data/quality).
bench-scale-out: venv
	$(PY) benchmarks/determinism.py --episodes 6 --out outputs/bench/determinism.json
	test -f data/quality/manifest.json || $(VENV)/bin/mmrep collect episodes=1200 workers=2 out=data/quality
	$(PY) benchmarks/scale_out.py --out outputs/bench/scale_out.json

# The representation's quality run and ablation table (docs/results/representation.md): about 6 + 44 + 40 minutes on 2 cores.
# The ablations are one Hydra multirun (one run folder per model config), then a table of the runs.
quality: venv
	test -f data/quality/manifest.json || $(VENV)/bin/mmrep collect episodes=1200 workers=2 out=data/quality
	$(VENV)/bin/mmrep train experiment=quality threads=2
	$(VENV)/bin/mmrep train -m 'model=glob(*)' data=data/quality out=runs/ablations epochs=1 \
		max_batches_per_epoch=2000 max_val_batches=100 lr=3.0e-4 lr_schedule=cosine threads=2
	$(PY) benchmarks/ablations.py runs/ablations --json outputs/bench/ablations.json

# The robustness comparison (docs/results/robustness.md): seven trainings of 7200 steps of 32, the
# in-simulation occluder test sets, the evaluations and the targets' table. Each training and each
# evaluation is its own target with one torch thread, so `make -j2 robustness` runs two at a time:
# on this 2-core machine 1.5x the throughput of one 2-thread job (0.265 s a step each against 0.20
# alone, measured), about 2.5 hours in all. Each step resumes (trainings) or is skipped when done.
COMPARE = quality_poe robust robust_flow_rgb concat concat_robust vision_only force_only
LABEL_quality_poe = plain
# The full grid where the targets need every perturbation of a sense (fused against single-sense).
GRID_robust = full
GRID_robust_flow_rgb = full
GRID_vision_only = full
GRID_force_only = full
SIM_SETS = clean_test occluder50_test occluder50_after_contact_test
SIM_RUNS = plain:runs/quality_poe,robust:runs/robust,robust_flow_rgb:runs/robust_flow_rgb,vision_only:runs/vision_only
OCCLUDER50 = env.occluder.size=[0.146,0.146] env.occluder.offset_range=0.02
OPTS_clean_test =
OPTS_occluder50_test = env.occluder.mode=static $(OCCLUDER50)
OPTS_occluder50_after_contact_test = env.occluder.mode=after_contact $(OCCLUDER50)

data/quality/manifest.json: | venv
	$(VENV)/bin/mmrep collect episodes=1200 workers=2 out=data/quality

runs/%/encoder.pt: data/quality/manifest.json
	$(VENV)/bin/mmrep train experiment=$* threads=1

outputs/eval/%/results.json: runs/%/encoder.pt
	$(VENV)/bin/mmrep evaluate "runs=[$(or $(LABEL_$*),$*):runs/$*]" data=data/quality \
	  perturb=$(or $(GRID_$*),default) out=outputs/eval/$* threads=1 progress=false

data/%/manifest.json: | venv
	$(VENV)/bin/mmrep collect episodes=48 workers=2 seed=5000 out=data/$* $(OPTS_$*)

outputs/eval_sim/%/results.json: data/%/manifest.json runs/quality_poe/encoder.pt runs/robust/encoder.pt \
                                  runs/robust_flow_rgb/encoder.pt runs/concat_robust/encoder.pt runs/vision_only/encoder.pt
	$(VENV)/bin/mmrep evaluate "runs=[$(SIM_RUNS)]" data=data/$* split=all episodes=48 calibration_episodes=0 \
	  "perturbations=[]" out=outputs/eval_sim/$* threads=1 progress=false

# The plain and the robust model with and without their flagged experts left out (default grid).
outputs/eval_reject/results.json: runs/quality_poe/encoder.pt runs/robust_flow_rgb/encoder.pt
	$(VENV)/bin/mmrep evaluate "runs=[plain:runs/quality_poe,robust_flow_rgb:runs/robust_flow_rgb]" data=data/quality \
	  reject=true out=outputs/eval_reject threads=1 progress=false

robustness: $(foreach e,$(COMPARE),outputs/eval/$(e)/results.json) \
            $(foreach d,$(SIM_SETS),outputs/eval_sim/$(d)/results.json) outputs/eval_reject/results.json
	$(PY) benchmarks/robustness_summary.py --grid $(foreach e,$(COMPARE),outputs/eval/$(e)) \
	  --sim $(foreach d,$(SIM_SETS),$(subst _test,,$(d))=outputs/eval_sim/$(d)) \
	  --runs $(foreach e,$(COMPARE),$(or $(LABEL_$(e)),$(e))=runs/$(e)) \
	  --roles fused=robust_flow_rgb plain=plain vision=vision_only force=force_only \
	  --out outputs/robustness_summary.json --report outputs/eval_compare

# The RL machinery on the privileged state: PPO, 100k env steps, 3 training seeds,
# with the millimetre tip-to-hole channels (fine) and without them (coarse, obs.fine_scale=0); each
# policy on 100 held-out seeds, mean and sampled actions. One core a run: `make -j2 state-policy`,
# 8-11 minutes a run, two at a time, about 35 minutes in all (docs/results/policies.md).
STATE_SEEDS = 0 1 2
STATE_TRAIN = $(VENV)/bin/mmrep policy train obs=state algo=ppo total_steps=100000 n_envs=4 vec_env=dummy \
	threads=1 eval_episodes=30 eval_every_steps=20000 progress=false
STATE_RUNS = $(foreach v,fine coarse,$(foreach s,$(STATE_SEEDS),state_$(v)_s$(s)))

runs/state_fine_s%/policy.pt: | venv
	$(STATE_TRAIN) seed=$* out=runs/state_fine_s$*
runs/state_coarse_s%/policy.pt: | venv
	$(STATE_TRAIN) seed=$* obs.fine_scale=0 out=runs/state_coarse_s$*
runs/state_%/eval/results.json: runs/state_%/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/state_$* episodes=100 progress=false

state-policy: $(foreach r,$(STATE_RUNS),runs/$(r)/eval/results.json)
	$(PY) benchmarks/state_policy_summary.py $(foreach r,$(STATE_RUNS),runs/$(r)) \
		--out benchmarks/results/state_policy

# The paper's policy experiment: every row of configs/paper/ (the same PPO, budget of
# 300k env steps, training seeds and evaluation seeds), 100 held-out episodes per row and seed, clean;
# the perturbed closed-loop settings for the rows that compare senses under faults. A run uses both
# cores (2 env workers): about 65-70 min of training and 8 of clean evaluation, about 50 more with
# the perturbed settings (76 min beside other jobs); the default rows x 3 seeds take about 40 hours here, so
# run it across sessions (every step, evaluations included, resumes or is skipped when done):
# `make paper PAPER_ROWS=fused_insertion PAPER_SEEDS=0`.
PAPER_ROWS ?= fused_insertion no_haptics no_vision fused_robust fused_robust_occluder fused_poe fused_concat \
	random_init pixels state fused_lstm_occluder fused_memory_occluder fused_faults_insertion fused_drc_insertion \
	fused_drc_odometry_insertion fused_memory_odometry_insertion fused_drc_odometry_occluder_insertion \
	fused_faults_memory_odometry_insertion fused_faults_memory_odometry_insertion_300k fused_memory_odometry_insertion_300k \
	no_haptics_150k
PAPER_SEEDS ?= 0 1 2
# extra overrides for every training, e.g. the remedy screens' reduced budget:
# `make paper PAPER_ROWS=fused_drc_insertion PAPER_TRAIN_ARGS=total_steps=150000`
PAPER_TRAIN_ARGS ?=
PAPER_OUT ?= benchmarks/results/paper
# no_vision gets the camera settings only: they check that it never uses the camera (its episodes
# must equal the clean ones); at 1% clean success its F/T and push rows could not be "clearly" anything,
# and its failed episodes all run the full 200 steps, which makes it the costliest evaluation.
PAPER_PERTURBED = fused_poe fused_insertion fused_robust fused_robust_occluder fused_lstm_occluder \
	fused_memory_occluder no_haptics fused_faults_insertion fused_drc_insertion fused_drc_odometry_insertion \
	fused_memory_odometry_insertion fused_drc_odometry_occluder_insertion fused_faults_memory_odometry_insertion \
	fused_faults_memory_odometry_insertion_300k fused_memory_odometry_insertion_300k
PAPER_SETTINGS = clean,occluder,occluder_after_contact,pushes,ft_noise,ft_bias,ft_dead
PAPER_CAMERA_ONLY = no_vision no_vision_touch
PAPER_CAMERA_SETTINGS = clean,occluder,occluder_after_contact

# The touch-needing setting (env=touch, docs/results/touch_task.md): its own dataset (1 mm clearance,
# 60-step episodes, the rim-moment expert in the noisy-expert share), the three senses' encoders and
# the robust one trained on it as the insertion rows were (experiment=touch_*, one thread each), then
# the rows: `make paper PAPER_ROWS="$(PAPER_TOUCH_ROWS)"` (add PAPER_SEEDS=0 to screen on one seed).
# Each row's policy waits for its encoder (ENCODER_<row>).
PAPER_TOUCH_ROWS = fused_touch no_haptics_touch no_vision_touch fused_robust_occluder_touch \
	fused_memory_occluder_touch fused_lstm_occluder_touch fused_touchhead_touch fused_faults_touch fused_drc_touch \
	fused_smooth_touch no_haptics_smooth_touch fused_faults_smooth_touch fused_drc_smooth_touch \
	fused_camera_error_touch no_haptics_camera_error_touch fused_drc_camera_error_touch \
	fused_drc_camera_error_200k_touch fused_memory_odometry_camera_error_touch \
	fused_memory_camera_error_touch fused_faults_odometry_camera_error_touch \
	no_haptics_memory_odometry_camera_error_touch fused_drc_odometry_smooth_touch \
	fused_memory_odometry_camera_error_200k_touch no_haptics_memory_odometry_camera_error_200k_touch \
	fused_memory_odometry_camera_error_300k_touch fused_memory_odometry_camera_error_250k_selected_touch
PAPER_PERTURBED += fused_touch no_haptics_touch fused_robust_occluder_touch fused_memory_occluder_touch \
	fused_lstm_occluder_touch fused_touchhead_touch fused_faults_touch fused_drc_touch fused_smooth_touch \
	no_haptics_smooth_touch fused_faults_smooth_touch fused_drc_smooth_touch fused_camera_error_touch \
	no_haptics_camera_error_touch fused_drc_camera_error_touch fused_drc_camera_error_200k_touch \
	fused_memory_odometry_camera_error_touch fused_memory_camera_error_touch \
	fused_faults_odometry_camera_error_touch no_haptics_memory_odometry_camera_error_touch \
	fused_drc_odometry_smooth_touch fused_memory_odometry_camera_error_200k_touch \
	no_haptics_memory_odometry_camera_error_200k_touch fused_memory_odometry_camera_error_300k_touch
TOUCH_COLLECT = env=touch "shapes=[square]" "+policy_kwargs.noisy_expert.search=moment" \
	"policies={noisy_expert: 0.5, contact_seeking: 0.3, random: 0.2}"
# fused, no_haptics and no_vision (F/T + proprio) on the clean-pressing data (runs/touch_press_*, below):
# the fused model's touch experts read the hole's direction there; the robust and touch-head rows still
# use the mixed data (data/touch_quality).
ENCODER_fused_touch = runs/touch_press_insertion/encoder.pt
ENCODER_no_haptics_touch = runs/touch_press_insertion_vision/encoder.pt
ENCODER_no_vision_touch = runs/touch_press_insertion_ftp/encoder.pt
ENCODER_fused_robust_occluder_touch = runs/touch_insertion_robust/encoder.pt
ENCODER_fused_memory_occluder_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_lstm_occluder_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_touchhead_touch = runs/touch_insertion_touchhead/encoder.pt
ENCODER_fused_faults_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_drc_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_smooth_touch = runs/touch_press_insertion/encoder.pt
ENCODER_no_haptics_smooth_touch = runs/touch_press_insertion_vision/encoder.pt
ENCODER_fused_faults_smooth_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_drc_smooth_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_camera_error_touch = runs/touch_press_insertion/encoder.pt
ENCODER_no_haptics_camera_error_touch = runs/touch_press_insertion_vision/encoder.pt
ENCODER_fused_drc_camera_error_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_drc_camera_error_200k_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_memory_odometry_camera_error_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_memory_camera_error_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_faults_odometry_camera_error_touch = runs/touch_press_insertion/encoder.pt
ENCODER_no_haptics_memory_odometry_camera_error_touch = runs/touch_press_insertion_vision/encoder.pt
ENCODER_fused_drc_odometry_smooth_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_memory_odometry_camera_error_200k_touch = runs/touch_press_insertion/encoder.pt
ENCODER_no_haptics_memory_odometry_camera_error_200k_touch = runs/touch_press_insertion_vision/encoder.pt
ENCODER_fused_memory_odometry_camera_error_300k_touch = runs/touch_press_insertion/encoder.pt
ENCODER_fused_memory_odometry_camera_error_250k_selected_touch = runs/touch_press_insertion/encoder.pt

data/touch_quality/manifest.json: | venv
	$(VENV)/bin/mmrep collect episodes=1200 workers=2 seed=0 $(TOUCH_COLLECT) out=data/touch_quality

runs/touch_%/encoder.pt: data/touch_quality/manifest.json
	$(VENV)/bin/mmrep train experiment=touch_$* threads=1

# Clean pressing on the touch setting: the rim-moment expert alone with little action noise, so the rim
# moment points to the hole; the encoders with the F/T expert's summary branch (experiment=touch_press_*).
TOUCH_PRESS_COLLECT = env=touch "shapes=[square]" "+policy_kwargs.noisy_expert.search=moment" \
	"policy_kwargs.noisy_expert.noise_std=0.05" "policies={noisy_expert: 1.0}"

data/touch_press1200/manifest.json: | venv
	$(VENV)/bin/mmrep collect episodes=1200 workers=2 seed=0 $(TOUCH_PRESS_COLLECT) out=data/touch_press1200

# the shorter stem wins over runs/touch_%: these train on the clean-pressing data. TOUCH_ENCODERS=committed
# takes the copies committed in benchmarks/results/paper_touch/encoders instead (trained by these same
# commands; the collection and training they save took 39 minutes of both cores, measured 2026-12-04):
# `make paper-touch TOUCH_ENCODERS=committed ...`
# Encoders with no committed copy (touch_press_insertion_ftp, no_vision_touch's) are trained either way.
ifeq ($(TOUCH_ENCODERS),committed)
COMMITTED_TOUCH = $(patsubst benchmarks/results/paper_touch/encoders/%.pt,runs/%/encoder.pt,\
	$(wildcard benchmarks/results/paper_touch/encoders/touch_press_*.pt))
$(COMMITTED_TOUCH): runs/%/encoder.pt: benchmarks/results/paper_touch/encoders/%.pt
	mkdir -p $(@D) && cp $< $@
endif
runs/touch_press_%/encoder.pt: data/touch_press1200/manifest.json
	$(VENV)/bin/mmrep train experiment=touch_press_$* threads=1

# The touch rows' own table, targets and robustness figure (beside the default setting's committed rows):
# benchmarks/results/paper_touch. Screen on one seed: make paper-touch PAPER_TOUCH_ROWS="fused_touch
# no_haptics_touch" PAPER_SEEDS=0
paper-touch:
	$(MAKE) paper PAPER_ROWS="$(PAPER_TOUCH_ROWS)" PAPER_OUT=benchmarks/results/paper_touch \
		PAPER_SUMMARY_ARGS="--rows $(PAPER_TOUCH_ROWS) --figure-with benchmarks/results/paper/summary.json"

define PAPER_RUN
runs/paper/$(1)_s$(2)/policy.pt: $(ENCODER_$(1)) | venv
	$(VENV)/bin/mmrep policy train +paper=$(1) seed=$(2) progress=false $(PAPER_TRAIN_ARGS) out=runs/paper/$(1)_s$(2)
runs/paper/$(1)_s$(2)/eval/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) episodes=100 progress=false \
		"settings=[$(if $(filter $(1),$(PAPER_PERTURBED)),$(PAPER_SETTINGS),$(if $(filter $(1),$(PAPER_CAMERA_ONLY)),$(PAPER_CAMERA_SETTINGS),clean))]"
endef
$(foreach r,$(PAPER_ROWS),$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_RUN,$(r),$(s)))))
# The policies other rows need (handover partners, the 200k touch row the 250k and 300k rows go on from)
# are trained where their own rows are not asked for, on seeds 0-2 and PAPER_SEEDS.
PAPER_NEEDED_ROWS = no_haptics_150k no_haptics_memory_odometry_camera_error_200k_touch \
	fused_memory_odometry_camera_error_200k_touch
define PAPER_TRAIN_ONLY
runs/paper/$(1)_s$(2)/policy.pt: $(ENCODER_$(1)) | venv
	$(VENV)/bin/mmrep policy train +paper=$(1) seed=$(2) progress=false $(PAPER_TRAIN_ARGS) out=runs/paper/$(1)_s$(2)
endef
$(foreach r,$(PAPER_NEEDED_ROWS),$(foreach s,$(sort 0 1 2 $(PAPER_SEEDS)),\
	$(if $(and $(filter $(r),$(PAPER_ROWS)),$(filter $(s),$(PAPER_SEEDS))),,$(eval $(call PAPER_TRAIN_ONLY,$(r),$(s))))))
# the 300k touch row goes on from the 200k row's policy of the same seed (init_policy in its config)
$(foreach s,$(PAPER_SEEDS),$(eval runs/paper/fused_memory_odometry_camera_error_300k_touch_s$(s)/policy.pt: \
	runs/paper/fused_memory_odometry_camera_error_200k_touch_s$(s)/policy.pt))
# ... and so does the selected row (250k, the policy kept on clean + the occluder at first contact), which
# stands for its kept policy (best/): evaluated there, as trained and with the F/T sensor zeroed at reset
# (about 3 + 8 min a seed), and on a dead F/T sensor handed over to a no_haptics partner (2 min); its final
# policy is not evaluated.
SELECTED_ROW = fused_memory_odometry_camera_error_250k_selected_touch
define PAPER_SELECTED_RUN
runs/paper/$(SELECTED_ROW)_s$(1)/policy.pt: runs/paper/fused_memory_odometry_camera_error_200k_touch_s$(1)/policy.pt
runs/paper/$(SELECTED_ROW)_s$(1)/best/eval/results.json: runs/paper/$(SELECTED_ROW)_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(SELECTED_ROW)_s$(1)/best episodes=100 progress=false \
		video=false "settings=[clean,occluder_after_contact]"
runs/paper/$(SELECTED_ROW)_s$(1)/best/eval_tare/results.json: runs/paper/$(SELECTED_ROW)_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(SELECTED_ROW)_s$(1)/best ft_tare=true \
		out=runs/paper/$(SELECTED_ROW)_s$(1)/best/eval_tare episodes=100 progress=false video=false \
		"settings=[ft_bias,clean,occluder_after_contact,ft_dead,ft_noise,pushes]"
runs/paper/$(SELECTED_ROW)_s$(1)/best/eval_tare_handover/results.json: runs/paper/$(SELECTED_ROW)_s$(1)/policy.pt \
		runs/paper/no_haptics_memory_odometry_camera_error_200k_touch_s$(call MOD3,$(1))/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(SELECTED_ROW)_s$(1)/best ft_tare=true \
		fallback=runs/paper/no_haptics_memory_odometry_camera_error_200k_touch_s$(call MOD3,$(1)) \
		out=runs/paper/$(SELECTED_ROW)_s$(1)/best/eval_tare_handover episodes=100 progress=false video=false \
		"settings=[ft_dead,clean]"
endef
# the dead-sensor handover goes to the no_haptics partner of seed S mod 3 (three partner seeds were trained)
MOD3 = $(shell echo $$(( $(1) % 3 )))
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_SELECTED_RUN,$(s))))

# The camera memory (mmrep.camera_memory) under the occluder after first contact: the fused policies,
# unchanged, with the camera experts held while the camera looks corrupted (eval_memory/, about 10 min
# a seed).
define PAPER_MEMORY_RUN
runs/paper/fused_insertion_s$(1)/eval_memory/results.json: runs/paper/fused_insertion_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_insertion_s$(1) out=runs/paper/fused_insertion_s$(1)/eval_memory \
		camera_memory=true episodes=100 progress=false "settings=[occluder_after_contact]"
endef
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_MEMORY_RUN,$(s))))

# Detect, reject, hold (mmrep policy eval camera_memory=true reject_flagged=true): a fused policy, unchanged,
# with each step's flagged experts left out (a biased or dead F/T sensor) and the camera's held while it
# looks corrupted (eval_drc/); the touch rows' `make paper-touch` runs it for fused_touch.
PAPER_DRC_SETTINGS = clean,occluder_after_contact,pushes,ft_noise,ft_bias,ft_dead
define PAPER_DRC_RUN
runs/paper/$(1)_s$(2)/eval_drc/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) out=runs/paper/$(1)_s$(2)/eval_drc \
		camera_memory=true reject_flagged=true episodes=100 progress=false "settings=[$(PAPER_DRC_SETTINGS)]"
endef
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_DRC_RUN,fused_touch,$(s))))

comma := ,
space := $(subst ,, )
# A scripted insertion stage after the learned search (mmrep policy eval press_in_hole=0.005): the touch
# rows, unchanged, with the vertical action a steady press once the tip is 5 mm inside the hole
# (eval_press/; about 3 min a setting and seed).
PAPER_PRESS_SETTINGS = clean,occluder_after_contact,pushes,ft_noise,ft_bias,ft_dead
define PAPER_PRESS_RUN
runs/paper/$(1)_s$(2)/eval_press/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) out=runs/paper/$(1)_s$(2)/eval_press \
		press_in_hole=0.005 episodes=100 progress=false \
		"settings=[$(if $(filter fused_touch,$(1)),$(PAPER_PRESS_SETTINGS),clean$(comma)occluder_after_contact)]"
endef
$(foreach r,fused_touch no_haptics_touch,$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_PRESS_RUN,$(r),$(s)))))
# ... and the fused row with camera memory under the occluder at first contact (eval_press_memory/)
define PAPER_PRESS_MEMORY_RUN
runs/paper/fused_touch_s$(1)/eval_press_memory/results.json: runs/paper/fused_touch_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_touch_s$(1) out=runs/paper/fused_touch_s$(1)/eval_press_memory \
		press_in_hole=0.005 camera_memory=true episodes=100 progress=false "modes=[deterministic]" \
		"settings=[occluder_after_contact]"
endef
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_PRESS_MEMORY_RUN,$(s))))

# The smooth pair (fused_smooth_touch, no_haptics_smooth_touch) and the same pair trained with a camera
# calibration error (fused_camera_error_touch, no_haptics_camera_error_touch), evaluation only: camera
# memory under the occluder at first contact (eval_memory/); the smooth pair also in a 0.5 mm hole
# (eval_clearance/) and under a camera calibration error of SMOOTH_CAMERA_ERRORS mm
# (eval_camera_error_<mm>mm/); about 1.5 min a setting and seed. A seed whose kept policy (best/) is an
# earlier one counts with it: evaluate it with the same commands, policy=RUN/best.
SMOOTH_CAMERA_ERRORS = 4 8 16 24
MEMORY_CHECK_ROWS = fused_smooth_touch no_haptics_smooth_touch fused_camera_error_touch no_haptics_camera_error_touch
define PAPER_MEMORY_CHECK
runs/paper/$(1)_s$(2)/eval_memory/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) out=runs/paper/$(1)_s$(2)/eval_memory \
		camera_memory=true episodes=100 progress=false "modes=[deterministic]" "settings=[occluder_after_contact]"
endef
$(foreach r,$(MEMORY_CHECK_ROWS),$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_MEMORY_CHECK,$(r),$(s)))))
define PAPER_SMOOTH_CHECKS
runs/paper/$(1)_s$(2)/eval_clearance/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) out=runs/paper/$(1)_s$(2)/eval_clearance \
		clearance=0.0005 episodes=100 progress=false "modes=[deterministic]" "settings=[clean,occluder_after_contact]"
$(foreach e,$(SMOOTH_CAMERA_ERRORS),runs/paper/$(1)_s$(2)/eval_camera_error_$(e)mm/results.json): \
		runs/paper/$(1)_s$(2)/eval_camera_error_%mm/results.json: runs/paper/$(1)_s$(2)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(2) out=runs/paper/$(1)_s$(2)/eval_camera_error_$$*mm \
		camera_target_error=$$$$(awk 'BEGIN{print $$*/1000}') episodes=100 progress=false video=false \
		"modes=[deterministic]" "settings=[clean]"
endef
$(foreach r,fused_smooth_touch no_haptics_smooth_touch,$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_SMOOTH_CHECKS,$(r),$(s)))))

# The odometry rows' extra evaluations (docs/results/touch_task.md): the fused odometry row under the
# static occluder (eval_static/) and with its flagged experts left out under the F/T faults (eval_drc/);
# the detect-reject-hold odometry row with sampled actions (eval_sampled/). About 4-14 min a seed.
ODOMETRY_ROW = fused_memory_odometry_camera_error_touch
define PAPER_ODOMETRY_CHECKS
runs/paper/$(ODOMETRY_ROW)_s$(1)/eval_static/results.json: runs/paper/$(ODOMETRY_ROW)_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(ODOMETRY_ROW)_s$(1) out=runs/paper/$(ODOMETRY_ROW)_s$(1)/eval_static \
		episodes=100 progress=false "modes=[deterministic]" "settings=[occluder]"
runs/paper/$(ODOMETRY_ROW)_s$(1)/eval_drc/results.json: runs/paper/$(ODOMETRY_ROW)_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(ODOMETRY_ROW)_s$(1) out=runs/paper/$(ODOMETRY_ROW)_s$(1)/eval_drc \
		reject_flagged=true episodes=100 progress=false "modes=[deterministic]" "settings=[ft_bias,ft_dead]"
runs/paper/fused_drc_odometry_smooth_touch_s$(1)/eval_sampled/results.json: runs/paper/fused_drc_odometry_smooth_touch_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_drc_odometry_smooth_touch_s$(1) \
		out=runs/paper/fused_drc_odometry_smooth_touch_s$(1)/eval_sampled episodes=100 progress=false "modes=[stochastic]" \
		"settings=[clean,occluder_after_contact,ft_bias,ft_dead,ft_noise,pushes]"
endef
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_ODOMETRY_CHECKS,$(s))))

# Handing over to a policy without touch when the F/T sensor fails (eval_handover/, docs/guides/policies.md):
# each setting's fused row with a no_haptics policy taking over once the F/T readings flatline for 3
# control steps; every closed-loop setting but the static occluder, so that a false handover on a live
# sensor would show. The touch row hands over to its partner of the same seed; the default row to one
# fallback, the no_haptics_150k seed with the best periodic evaluation at 150k (seed 1: 0.9, tied with
# seed 2; seed 0 reached 0.5). About 25-30 min a seed on the default setting, 20 on the touch setting.
# The same again with the F/T sensor zeroed at each reset in free air (ft_tare=true, eval_tare_handover/):
# the tare takes out a bias present from the start, the handover covers a dead sensor.
HANDOVER_PAIRS = fused_faults_memory_odometry_insertion_300k:no_haptics_150k \
	fused_memory_odometry_camera_error_200k_touch:no_haptics_memory_odometry_camera_error_200k_touch \
	fused_memory_odometry_camera_error_300k_touch:no_haptics_memory_odometry_camera_error_200k_touch
HANDOVER_FALLBACK_SEED_fused_faults_memory_odometry_insertion_300k = 1
HANDOVER_SETTINGS = ft_dead,clean,occluder_after_contact,ft_bias,ft_noise,pushes
define PAPER_HANDOVER_RUN
runs/paper/$(1)_s$(3)/eval_handover/results.json: runs/paper/$(1)_s$(3)/policy.pt \
		runs/paper/$(2)_s$(or $(HANDOVER_FALLBACK_SEED_$(1)),$(3))/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(3) fallback=runs/paper/$(2)_s$(or $(HANDOVER_FALLBACK_SEED_$(1)),$(3)) \
		out=runs/paper/$(1)_s$(3)/eval_handover episodes=100 progress=false video=false "settings=[$(HANDOVER_SETTINGS)]"
runs/paper/$(1)_s$(3)/eval_tare_handover/results.json: runs/paper/$(1)_s$(3)/policy.pt \
		runs/paper/$(2)_s$(or $(HANDOVER_FALLBACK_SEED_$(1)),$(3))/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/$(1)_s$(3) fallback=runs/paper/$(2)_s$(or $(HANDOVER_FALLBACK_SEED_$(1)),$(3)) \
		ft_tare=true out=runs/paper/$(1)_s$(3)/eval_tare_handover episodes=100 progress=false video=false \
		"settings=[$(HANDOVER_SETTINGS)]"
endef
$(foreach p,$(HANDOVER_PAIRS),$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_HANDOVER_RUN,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p))),$(s)))))
HANDOVER_PRIMARIES = $(foreach p,$(HANDOVER_PAIRS),$(word 1,$(subst :, ,$(p))))
# the touch row's seeds without a no_haptics partner (3-5): the tare alone, on every sense-failure setting
runs/paper/fused_memory_odometry_camera_error_200k_touch_s%/eval_tare/results.json: \
		runs/paper/fused_memory_odometry_camera_error_200k_touch_s%/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_memory_odometry_camera_error_200k_touch_s$* ft_tare=true \
		out=runs/paper/fused_memory_odometry_camera_error_200k_touch_s$*/eval_tare episodes=100 progress=false \
		video=false "settings=[ft_bias,clean,occluder_after_contact,ft_dead,ft_noise,pushes]"

# Shape transfer: the square fused_insertion policies on the other pegs without retraining
# (eval_transfer/, 100 seeds a shape, about 16 min a seed), and a new policy per shape on the same
# frozen representation (rows fused_insertion_<shape>, seed 0, one training each).
PAPER_SHAPES ?= round hexagon triangle semicircle
define PAPER_TRANSFER_RUN
runs/paper/fused_insertion_s$(1)/eval_transfer/results.json: runs/paper/fused_insertion_s$(1)/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_insertion_s$(1) out=runs/paper/fused_insertion_s$(1)/eval_transfer \
		episodes=100 progress=false "shapes=[$(subst $(space),$(comma),$(strip $(PAPER_SHAPES)))]"
endef
$(foreach s,$(PAPER_SEEDS),$(eval $(call PAPER_TRANSFER_RUN,$(s))))
define PAPER_SHAPE_RUN
runs/paper/fused_insertion_$(1)_s0/policy.pt: | venv
	$(VENV)/bin/mmrep policy train +paper=fused_insertion env.peg_shape=$(1) seed=0 progress=false \
		out=runs/paper/fused_insertion_$(1)_s0
runs/paper/fused_insertion_$(1)_s0/eval/results.json: runs/paper/fused_insertion_$(1)_s0/policy.pt
	$(VENV)/bin/mmrep policy eval policy=runs/paper/fused_insertion_$(1)_s0 episodes=100 progress=false
endef
$(foreach sh,$(PAPER_SHAPES),$(eval $(call PAPER_SHAPE_RUN,$(sh))))

paper-shapes: $(foreach s,$(PAPER_SEEDS),runs/paper/fused_insertion_s$(s)/eval_transfer/results.json) \
		$(foreach sh,$(PAPER_SHAPES),runs/paper/fused_insertion_$(sh)_s0/eval/results.json)
	$(PY) benchmarks/paper_summary.py runs/paper --out benchmarks/results/paper

paper-status: venv  # where each run stands: env steps trained, evaluations done or rows kept
	$(PY) benchmarks/paper_summary.py runs/paper --status

paper: $(foreach r,$(filter-out $(SELECTED_ROW),$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/$(r)_s$(s)/eval/results.json)) \
		$(if $(filter $(SELECTED_ROW),$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),\
			runs/paper/$(SELECTED_ROW)_s$(s)/best/eval/results.json runs/paper/$(SELECTED_ROW)_s$(s)/best/eval_tare/results.json \
			runs/paper/$(SELECTED_ROW)_s$(s)/best/eval_tare_handover/results.json)) \
		$(if $(filter fused_insertion,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/fused_insertion_s$(s)/eval_memory/results.json)) \
		$(if $(filter fused_touch,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/fused_touch_s$(s)/eval_drc/results.json)) \
		$(foreach r,$(filter fused_touch no_haptics_touch,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/$(r)_s$(s)/eval_press/results.json)) \
		$(if $(filter fused_touch,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/fused_touch_s$(s)/eval_press_memory/results.json)) \
		$(foreach r,$(filter $(MEMORY_CHECK_ROWS),$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),runs/paper/$(r)_s$(s)/eval_memory/results.json)) \
		$(foreach r,$(filter fused_smooth_touch no_haptics_smooth_touch,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),\
			runs/paper/$(r)_s$(s)/eval_clearance/results.json \
			$(foreach e,$(SMOOTH_CAMERA_ERRORS),runs/paper/$(r)_s$(s)/eval_camera_error_$(e)mm/results.json))) \
		$(if $(filter $(ODOMETRY_ROW),$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),\
			runs/paper/$(ODOMETRY_ROW)_s$(s)/eval_static/results.json runs/paper/$(ODOMETRY_ROW)_s$(s)/eval_drc/results.json)) \
		$(if $(filter fused_drc_odometry_smooth_touch,$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),\
			runs/paper/fused_drc_odometry_smooth_touch_s$(s)/eval_sampled/results.json)) \
		$(foreach r,$(filter $(HANDOVER_PRIMARIES),$(PAPER_ROWS)),$(foreach s,$(PAPER_SEEDS),\
			runs/paper/$(r)_s$(s)/eval_handover/results.json runs/paper/$(r)_s$(s)/eval_tare_handover/results.json))
	$(PY) benchmarks/paper_summary.py runs/paper --out $(PAPER_OUT) $(PAPER_SUMMARY_ARGS)

lint: venv
	$(VENV)/bin/ruff check sim mmrep tests benchmarks

clean:
	rm -rf outputs .pytest_cache site
